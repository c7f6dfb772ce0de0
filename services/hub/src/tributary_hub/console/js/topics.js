// Topics: list and search, create, one topic's detail with its publish form (built from the schema, each
// violation at its field) and its schema versions side by side.

import { ApiError, allows, json } from "./api.js";
import { build, clearErrors, read, showErrors } from "./form.js";
import { $, button, failed, status } from "./ui.js";
import { Versions } from "./versions.js";

/** @type {{name: string, description?: string | null}[]} */
let topics = [];
/** @type {any} */
let current = null;
/** @type {import("./api.js").WhoAmI | null} */
let viewer = null;
const versions = new Versions({
  left: $("v-left"),
  right: $("v-right"),
  leftText: $("v-left-json"),
  rightText: $("v-right-json"),
  compat: $("versions-compat"),
});

/** @param {import("./api.js").WhoAmI} who */
export async function loadTopics(who) {
  viewer = who;
  if (!allows(who, "topics:read")) return;
  // A page holds at most 1000 topics: follow `next` to the last.
  /** @type {string | null} */
  let next = null;
  topics = [];
  do {
    const page = await json("GET", next ? `/topics?cursor=${encodeURIComponent(next)}` : "/topics");
    topics.push(...page.items);
    next = page.next ?? null;
  } while (next);
  renderTopics();
  $("topic-names").replaceChildren(...topics.map((t) => new Option(t.name)));
}

function renderTopics() {
  const q = /** @type {string} */ ($("topic-search").value).trim().toLowerCase();
  const items = topics.filter((t) => !q || t.name.includes(q) || (t.description ?? "").toLowerCase().includes(q));
  $("topic-list").replaceChildren(
    ...items.map((t) => {
      const li = document.createElement("li");
      li.append(button(t.name, () => openTopic(t.name).catch(failed)));
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
  await versions.open(current.name, current.version, current.compatibility);
}

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
    if (viewer) await loadTopics(viewer);
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
