// History: a paged table of one topic's events (cursor pages, previous pages remembered) and exports of the same
// selection as CSV or JSON Lines (fetched with the credentials, saved as a file).

import { json, raw } from "./api.js";

export class History {
  /** @param {{table: HTMLTableElement, prev: HTMLButtonElement, next: HTMLButtonElement, csv: HTMLButtonElement, jsonl: HTMLButtonElement, status: (text: string) => void}} els */
  constructor(els) {
    this.els = els;
    /** @type {URLSearchParams} */
    this.query = new URLSearchParams();
    this.topic = "";
    /** @type {(string | null)[]} cursors of the pages shown so far (null: the first) */
    this.cursors = [];
    /** @type {string | null} */
    this.nextCursor = null;
  }

  /**
   * @param {string} topic
   * @param {{subject?: string, start?: string, end?: string, limit: number}} sel
   */
  async select(topic, sel) {
    this.topic = topic;
    this.query = new URLSearchParams();
    if (sel.subject) this.query.set("subject", sel.subject);
    if (sel.start) this.query.set("start", sel.start);
    if (sel.end) this.query.set("end", sel.end);
    this.limit = sel.limit;
    this.cursors = [null];
    await this.load();
  }

  path(cursor = /** @type {string | null} */ (null), limit = true) {
    const q = new URLSearchParams(this.query);
    if (limit) q.set("limit", String(this.limit));
    if (cursor) q.set("cursor", cursor);
    const s = q.toString();
    return `/topics/${encodeURIComponent(this.topic)}/events${s ? `?${s}` : ""}`;
  }

  async load() {
    const page = await json("GET", this.path(this.cursors[this.cursors.length - 1]));
    this.nextCursor = page.next;
    const body = this.els.table.tBodies[0];
    body.replaceChildren();
    for (const ev of page.items) {
      const tr = body.insertRow();
      for (const v of [ev.time, ev.subject ?? "", ev.id, JSON.stringify(ev.data)]) tr.insertCell().textContent = v;
    }
    this.els.prev.disabled = this.cursors.length <= 1;
    this.els.next.disabled = !page.next;
    this.els.csv.disabled = this.els.jsonl.disabled = false;
    this.els.status(`page ${this.cursors.length}: ${page.items.length} events${page.next ? "" : " (last page)"}`);
  }

  async next() {
    if (!this.nextCursor) return;
    this.cursors.push(this.nextCursor);
    await this.load();
  }

  async prev() {
    if (this.cursors.length <= 1) return;
    this.cursors.pop();
    await this.load();
  }

  /** @param {"csv" | "jsonl"} fmt */
  async export(fmt) {
    const accept = fmt === "csv" ? "text/csv" : "application/jsonl";
    const res = await raw("GET", this.path(null, false), { accept });
    const url = URL.createObjectURL(await res.blob());
    const a = document.createElement("a");
    a.href = url;
    a.download = `${this.topic}.${fmt}`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }
}
