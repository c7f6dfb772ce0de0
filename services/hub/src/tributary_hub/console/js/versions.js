// A topic's schema versions side by side under its compatibility mode: two versions' JSON with sorted keys and
// one indentation, aligned line by line (a line diff), lines only in the left or only in the right marked.

import { json } from "./api.js";
import { failed } from "./ui.js";

/** @type {Record<string, string>} */
const MEANING = {
  backward: "each version accepts what the previous one accepted (consumers on the new version read old events)",
  forward: "each previous version accepts what the next one accepts (old consumers read new events)",
  full: "backward and forward",
  none: "versions are not checked against each other",
};
const MAX_CELLS = 4_000_000; // beyond this many line pairs, no alignment (the diff table would not fit in memory)

/** @typedef {{left: string | null, right: string | null}} Row */

export class Versions {
  /** @param {{left: HTMLSelectElement, right: HTMLSelectElement, leftText: HTMLElement, rightText: HTMLElement, compat: HTMLElement}} els */
  constructor(els) {
    this.els = els;
    this.topic = "";
    /** @type {Map<number, unknown>} */
    this.bodies = new Map();
    for (const sel of [els.left, els.right]) sel.addEventListener("change", () => this.render().catch(failed));
  }

  /**
   * @param {string} topic
   * @param {number} latest
   * @param {string} compatibility
   */
  async open(topic, latest, compatibility) {
    this.topic = topic;
    this.bodies.clear();
    /** @type {{version: number, created_at: string, created_by?: string | null}[]} */
    const list = (await json("GET", `/topics/${encodeURIComponent(topic)}/schemas`)).items;
    this.els.compat.textContent = `compatibility ${compatibility}: ${MEANING[compatibility] ?? compatibility} · ${list.length} version${list.length === 1 ? "" : "s"}`;
    for (const sel of [this.els.left, this.els.right]) {
      sel.replaceChildren(...list.map((v) => new Option(`v${v.version} · ${v.created_at}${v.created_by ? ` · ${v.created_by}` : ""}`, String(v.version))));
    }
    this.els.left.value = String(Math.max(1, latest - 1));
    this.els.right.value = String(latest);
    await this.render();
  }

  async render() {
    const [a, b] = await Promise.all([this.body(Number(this.els.left.value)), this.body(Number(this.els.right.value))]);
    const rows = align(canonical(a).split("\n"), canonical(b).split("\n"));
    paint(this.els.leftText, rows.map((r) => [r.left, r.right === null ? "gone" : "same"]));
    paint(this.els.rightText, rows.map((r) => [r.right, r.left === null ? "new" : "same"]));
  }

  /** @param {number} version */
  async body(version) {
    if (!this.bodies.has(version)) {
      const v = await json("GET", `/topics/${encodeURIComponent(this.topic)}/schemas/${version}`);
      this.bodies.set(version, v.schema);
    }
    return this.bodies.get(version);
  }
}

/**
 * JSON with every object's keys sorted: the same schema is the same text, whatever order it was written in.
 * @param {unknown} value
 */
export function canonical(value) {
  /** @param {unknown} v @returns {unknown} */
  const sort = (v) =>
    Array.isArray(v) ? v.map(sort) : v && typeof v === "object" ? Object.fromEntries(Object.entries(v).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)).map(([k, x]) => [k, sort(x)])) : v;
  return JSON.stringify(sort(value), null, 2);
}

/**
 * Two texts' lines aligned by their longest common subsequence: common lines side by side, the others against
 * an empty slot (null).
 * @param {string[]} a
 * @param {string[]} b
 * @returns {Row[]}
 */
export function align(a, b) {
  if ((a.length + 1) * (b.length + 1) > MAX_CELLS) {
    return Array.from({ length: Math.max(a.length, b.length) }, (_, i) => ({ left: a[i] ?? null, right: b[i] ?? null }));
  }
  const w = b.length + 1;
  const lcs = new Uint32Array((a.length + 1) * w);
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      lcs[i * w + j] = a[i] === b[j] ? lcs[(i + 1) * w + j + 1] + 1 : Math.max(lcs[(i + 1) * w + j], lcs[i * w + j + 1]);
    }
  }
  /** @type {Row[]} */
  const rows = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) rows.push({ left: a[i++], right: b[j++] });
    else if (j >= b.length || (i < a.length && lcs[(i + 1) * w + j] >= lcs[i * w + j + 1])) rows.push({ left: a[i++], right: null });
    else rows.push({ left: null, right: b[j++] });
  }
  return rows;
}

/**
 * @param {HTMLElement} pre
 * @param {[string | null, string][]} lines  text (null: an empty slot facing the other side's line) and its kind
 */
function paint(pre, lines) {
  pre.replaceChildren(
    ...lines.map(([text, kind]) => {
      const span = document.createElement("span");
      span.className = text === null ? "line pad" : `line ${kind}`;
      span.textContent = `${text ?? ""}\n`;
      return span;
    }),
  );
}
