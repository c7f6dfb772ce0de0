// The console: sign-in, navigation by scope (what the credentials do not allow is not offered; the hub still
// checks every request), and each view entered from its link.

import { ApiError, allows, config, credential, json, setCredential } from "./api.js";
import { History } from "./history.js";
import { DeadLetters, loadSources } from "./sources.js";
import { Tail } from "./tail.js";
import { loadTopics } from "./topics.js";
import { $, failed, onRefused, status, utc } from "./ui.js";
import { Unitops } from "./unitops.js";

/** @type {import("./api.js").WhoAmI | null} */
let who = null;
/** @type {Tail | null} */
let tail = null;
const history = new History({
  table: $("history-table"),
  prev: $("h-prev"),
  next: $("h-next"),
  csv: $("h-csv"),
  jsonl: $("h-jsonl"),
  status,
});
const letters = new DeadLetters();
const cfg = await config();
const unitops = new Unitops(cfg.stream_url, cfg.chart);

const topicNames = async () => {
  if (who) await loadTopics(who);
};
/** What entering each view loads (the others need nothing until their form is used). */
/** @type {Record<string, () => Promise<void>>} */
const enter = {
  topics: topicNames,
  history: topicNames,
  unitops: () => unitops.list(false),
  sources: loadSources,
  deadletters: () => letters.first(),
};

/** @param {string} [why] */
function signOut(why) {
  setCredential(null);
  who = null;
  tail?.stop();
  unitops.leave();
  $("nav").hidden = $("who").hidden = true;
  show("signin");
  $("credential").focus();
  if (why) status(why);
}
onRefused(signOut);

/** @param {string} view */
function show(view) {
  for (const s of document.querySelectorAll("main > section")) /** @type {HTMLElement} */ (s).hidden = s.id !== `view-${view}`;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.getAttribute("data-view") === view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (view !== "unitops") unitops.leave(); // a chart nobody sees keeps no subscription open
}

/** Hide what the credentials do not allow. */
function applyScopes() {
  if (!who) return;
  for (const el of document.querySelectorAll("[data-scope]")) {
    /** @type {HTMLElement} */ (el).hidden = !allows(who, el.getAttribute("data-scope") ?? "");
  }
}

async function signIn() {
  try {
    who = await json("GET", "/whoami");
  } catch (err) {
    setCredential(null);
    status(err instanceof ApiError ? `sign-in refused: ${err.message}` : String(err));
    return;
  }
  const w = /** @type {import("./api.js").WhoAmI} */ (who);
  $("who-text").textContent = `${w.subject} (${w.kind}) · ${w.scopes.join(" ")}${w.expires_at ? ` · until ${w.expires_at}` : ""}`;
  $("nav").hidden = $("who").hidden = false;
  status("");
  applyScopes();
  route();
}

function route() {
  if (!who) return show("signin");
  const first = /** @type {HTMLElement | null} */ (document.querySelector("nav a:not([hidden])"));
  let view = location.hash.slice(1);
  const link = document.querySelector(`nav a[data-view="${CSS.escape(view)}"]`);
  if (!link || /** @type {HTMLElement} */ (link).hidden) view = first?.dataset.view ?? "";
  if (!view) {
    status("these credentials allow nothing this console shows");
    return show("none");
  }
  show(view);
  enter[view]?.().catch(failed);
}

$("signin-form").addEventListener("submit", (/** @type {SubmitEvent} */ e) => {
  e.preventDefault();
  setCredential($("credential").value.trim());
  $("credential").value = "";
  signIn();
});
$("signout").addEventListener("click", () => signOut("signed out"));
window.addEventListener("hashchange", route);

$("tail-form").addEventListener("submit", (/** @type {SubmitEvent} */ e) => {
  e.preventDefault();
  tail?.start($("tail-pattern").value.trim());
});
$("tail-pause").addEventListener("click", () => tail?.togglePause());

$("history-form").addEventListener("submit", (/** @type {SubmitEvent} */ e) => {
  e.preventDefault();
  history
    .select($("h-topic").value.trim(), {
      subject: $("h-subject").value.trim() || undefined,
      start: utc($("h-start").value),
      end: utc($("h-end").value),
      limit: Number($("h-limit").value) || 50,
    })
    .catch(failed);
});
$("h-next").addEventListener("click", () => history.next().catch(failed));
$("h-prev").addEventListener("click", () => history.prev().catch(failed));
$("h-csv").addEventListener("click", () => history.export("csv").catch(failed));
$("h-jsonl").addEventListener("click", () => history.export("jsonl").catch(failed));

if (cfg.stream_url) {
  tail = new Tail(cfg.stream_url, { list: $("tail-list"), state: $("tail-state"), pause: $("tail-pause") });
} else {
  $("tail-form").hidden = true;
  $("tail-state").textContent = "no stream configured for this console (TRIBUTARY_CONSOLE_STREAM_URL)";
}
if (credential()) await signIn();
else {
  show("signin");
  $("credential").focus();
}
