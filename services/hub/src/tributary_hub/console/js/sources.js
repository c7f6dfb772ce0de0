// Sources and the ingest instances serving them (leases each), and dead letters with replay (admin only).

import { json } from "./api.js";
import { $, button, failed, fillRows, status } from "./ui.js";

$("sources-refresh").addEventListener("click", () => loadSources().catch(failed));

export async function loadSources() {
  /** @type {{name: string, instances: {instance_id: string, capacity: number, free: number, leases: number, last_seen: string}[]}[]} */
  const sources = (await json("GET", "/sources")).items;
  /** @type {(string | number)[][]} */
  const rows = [];
  for (const s of sources) {
    const leases = s.instances.reduce((sum, i) => sum + i.leases, 0);
    if (!s.instances.length) rows.push([s.name, "no live instance", "", "", ""]);
    for (const i of s.instances) rows.push([s.name, i.instance_id, i.leases, `${i.free} / ${i.capacity}`, i.last_seen]);
    rows.push([`${s.name}: total`, `${s.instances.length} instance${s.instances.length === 1 ? "" : "s"}`, leases, "", ""]);
  }
  fillRows($("sources-table").tBodies[0], rows);
  status(sources.length ? `${sources.length} source${sources.length === 1 ? "" : "s"}` : "no source has been announced by an ingest instance");
}

export class DeadLetters {
  constructor() {
    /** @type {(string | null)[]} cursors of the pages shown so far (null: the first) */
    this.cursors = [null];
    /** @type {string | null} */
    this.nextCursor = null;
    $("dl-form").addEventListener("submit", (/** @type {SubmitEvent} */ e) => {
      e.preventDefault();
      this.first().catch(failed);
    });
    $("dl-next").addEventListener("click", () => {
      if (!this.nextCursor) return;
      this.cursors.push(this.nextCursor);
      this.load().catch(failed);
    });
    $("dl-prev").addEventListener("click", () => {
      if (this.cursors.length > 1) this.cursors.pop();
      this.load().catch(failed);
    });
  }

  async first() {
    this.cursors = [null];
    await this.load();
  }

  async load() {
    const q = new URLSearchParams({ limit: "50" });
    const reason = $("dl-reason").value.trim();
    if (reason) q.set("reason", reason);
    const cursor = this.cursors[this.cursors.length - 1];
    if (cursor) q.set("cursor", cursor);
    const page = await json("GET", `/deadletters?${q}`);
    fillRows(
      $("dl-table").tBodies[0],
      page.items.map((/** @type {any} */ d) => [
        button(`Replay ${d.id.slice(0, 8)}`, () => this.replay(d.id).catch(failed)),
        d.time,
        d.reason,
        d.queue,
        d.routing_key,
        d.size,
        d.replays ? `${d.replays} (last ${d.replayed_at})` : "0",
      ]),
    );
    this.nextCursor = page.next;
    $("dl-next").disabled = !page.next;
    $("dl-prev").disabled = this.cursors.length <= 1;
    status(`dead letters, page ${this.cursors.length}: ${page.items.length}${page.next ? "" : " (last page)"}`);
  }

  /** @param {string} id */
  async replay(id) {
    const d = await json("POST", `/deadletters/${id}:replay`);
    await this.load();
    status(`replayed ${id} to ${d.exchange} (${d.routing_key}): ${d.replays} replay${d.replays === 1 ? "" : "s"} so far`);
  }
}
