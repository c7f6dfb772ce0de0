// The console: sign-in, navigation by scope, and the three views of this slice (topics, live tail, history).

import { ApiError, allows, config, credential, json, setCredential } from "./api.js";
import { build, clearErrors, read, showErrors } from "./form.js";
import { History } from "./history.js";
import { Tail } from "./tail.js";

/** @param {string} id */
const $ = (id) => /** @type {any} */ (document.getElementById(id));

/** @type {import("./api.js").WhoAmI | null} */
let who = null;
/** @type {{name: string, description?: string | null}[]} */
let topics = [];
/** @type {any} */
let current = null;
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

/** @param {string} text */
function status(text) {
  $("status").textContent = text;
}

/** @param {unknown} err */
function failed(err) {
  status(err instanceof ApiError ? `${err.status} ${err.code}: ${err.message}` : String(err));
  if (err instanceof ApiError && err.status === 401) signOut("the credentials were refused; sign in again");
}

/** @param {string} [why] */
function signOut(why) {
  setCredential(null);
  who = null;
  tail?.stop();
  $("nav").hidden = $("who").hidden = true;
  show("signin");
  $("credential").focus();
  if (why) status(why);
}

/** @param {string} view */
function show(view) {
  for (const s of document.querySelectorAll("main > section")) /** @type {HTMLElement} */ (s).hidden = s.id !== `view-${view}`;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.getAttribute("data-view") === view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

/** Hide what the credentials do not allow (the hub still checks every request). */
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
  if (view === "topics" || view === "history") loadTopics().catch(failed);
}

async function loadTopics() {
  if (!who || !allows(who, "topics:read")) return;
  topics = (await json("GET", "/topics")).items;
  renderTopics();
  $("topic-names").replaceChildren(...topics.map((t) => new Option(t.name)));
}

function renderTopics() {
  const q = /** @type {string} */ ($("topic-search").value).trim().toLowerCase();
  const items = topics.filter((t) => !q || t.name.includes(q) || (t.description ?? "").toLowerCase().includes(q));
  $("topic-list").replaceChildren(
    ...items.map((t) => {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = t.name;
      b.addEventListener("click", () => openTopic(t.name).catch(failed));
      li.append(b);
      return li;
    }),
  );
  if (!items.length) $("topic-list").textContent = q ? "no topic matches" : "no topics yet";
}

/** @param {string} name */
async function openTopic(name) {
  current = await json("GET", `/topics/${encodeURIComponent(name)}`);
  $("topic-detail").hidden = false;
  $("topic-title").textContent = current.name;
  $("topic-meta").textContent = `schema v${current.version} · compatibility ${current.compatibility}${current.description ? ` · ${current.description}` : ""}`;
  const fields = $("pub-fields");
  fields.replaceChildren(Object.assign(document.createElement("legend"), { textContent: "data" }));
  build(fields, current.schema ?? {});
  $("pub-result").textContent = "";
  $("pub-error").textContent = "";
  $("topic-title").tabIndex = -1;
  $("topic-title").focus();
}

$("signin-form").addEventListener("submit", (/** @type {SubmitEvent} */ e) => {
  e.preventDefault();
  setCredential($("credential").value.trim());
  $("credential").value = "";
  signIn();
});
$("signout").addEventListener("click", () => signOut("signed out"));
window.addEventListener("hashchange", route);
$("topic-search").addEventListener("input", renderTopics);

$("create-form").addEventListener("submit", async (/** @type {SubmitEvent} */ e) => {
  e.preventDefault();
  $("create-error").textContent = "";
  let schema;
  try {
    schema = JSON.parse($("new-schema").value);
  } catch (err) {
    $("create-error").textContent = `the schema is not JSON: ${err}`;
    return;
  }
  try {
    const t = await json("POST", "/topics", { name: $("new-name").value.trim(), schema, compatibility: $("new-compat").value });
    status(`topic ${t.name} created`);
    $("create-topic").open = false;
    await loadTopics();
    await openTopic(t.name);
  } catch (err) {
    $("create-error").textContent = err instanceof ApiError ? `${err.message} ${err.details.map((d) => `${d.loc}: ${d.msg}`).join("; ")}` : String(err);
  }
});

$("publish-form").addEventListener("submit", async (/** @type {SubmitEvent} */ e) => {
  e.preventDefault();
  if (!current) return;
  const form = $("publish-form");
  clearErrors(form);
  $("pub-error").textContent = "";
  $("pub-result").textContent = "";
  /** @type {Record<string, unknown>} */
  const body = { data: read($("pub-fields")) };
  const subject = $("pub-subject").value.trim();
  if (subject) body.subject = subject;
  try {
    const r = await json("POST", `/topics/${encodeURIComponent(current.name)}/events`, body);
    $("pub-result").textContent = `published: ${r.id ?? "accepted"}`;
  } catch (err) {
    if (err instanceof ApiError && err.status === 422) {
      $("pub-error").textContent = err.message;
      showErrors(form, err.details, $("pub-error"));
      if (!$("pub-error").textContent) $("pub-error").textContent = err.message;
    } else failed(err);
  }
});

$("tail-form").addEventListener("submit", (/** @type {SubmitEvent} */ e) => {
  e.preventDefault();
  tail?.start($("tail-pattern").value.trim());
});
$("tail-pause").addEventListener("click", () => tail?.togglePause());

/** @param {string} v  a datetime-local value, taken as UTC */
const utc = (v) => (v ? `${v.length === 16 ? `${v}:00` : v}Z` : undefined);
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

const cfg = await config();
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
