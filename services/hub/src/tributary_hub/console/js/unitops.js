// Unitops: list (by name prefix, paged), one unitop's detail (meta, items with their sources and sids) and the
// live chart of its items.

import { json } from "./api.js";
import { UnitopChart } from "./chart.js";
import { $, button, failed, fillRows, utc } from "./ui.js";

export class Unitops {
  /**
   * @param {string | null} streamUrl
   * @param {boolean} chart  whether the hub serves the chart library
   */
  constructor(streamUrl, chart) {
    /** @type {string | null} */
    this.next = null;
    this.chart = new UnitopChart(
      { box: $("chart"), state: $("chart-state"), start: $("c-start"), end: $("c-end"), live: $("c-live") },
      streamUrl,
      chart,
    );
    $("unitop-search").addEventListener("submit", (/** @type {SubmitEvent} */ e) => {
      e.preventDefault();
      this.list(false).catch(failed);
    });
    $("unitop-more").addEventListener("click", () => this.list(true).catch(failed));
    $("chart-range").addEventListener("submit", (/** @type {SubmitEvent} */ e) => {
      e.preventDefault();
      const start = Date.parse(utc($("c-start").value) ?? "");
      const end = $("c-end").value ? Date.parse(utc($("c-end").value) ?? "") : Date.now();
      this.chart.range(start, end).catch(failed);
    });
    $("c-live").addEventListener("click", () => this.chart.live().catch(failed));
  }

  /** @param {boolean} more  the next page after those shown, else the first */
  async list(more) {
    const q = new URLSearchParams({ limit: "50" });
    const prefix = $("unitop-prefix").value.trim();
    if (prefix) q.set("prefix", prefix);
    if (more && this.next) q.set("cursor", this.next);
    const page = await json("GET", `/unitops?${q}`);
    const items = page.items.map((/** @type {any} */ u) => {
      const li = document.createElement("li");
      li.append(button(u.name, () => this.open(u.name).catch(failed)));
      li.append(` ${Object.keys(u.items).length} items${u.record ? " · recorded" : ""}`);
      return li;
    });
    if (more) $("unitop-list").append(...items);
    else $("unitop-list").replaceChildren(...items);
    if (!more && !items.length) $("unitop-list").textContent = prefix ? "no unitop matches" : "no unitops yet";
    this.next = page.next;
    $("unitop-more").hidden = !page.next;
  }

  /** @param {string} name */
  async open(name) {
    const u = await json("GET", `/unitops/${encodeURIComponent(name)}`);
    $("unitop-detail").hidden = false;
    $("unitop-title").textContent = u.name;
    const meta = Object.entries(u.meta).map(([k, v]) => `${k}=${v}`);
    $("unitop-meta").textContent = [u.record ? "recorded" : "not recorded", ...meta].join(" · ");
    const items = Object.entries(u.items);
    fillRows(
      $("unitop-items").tBodies[0],
      items.map(([item, /** @type {any} */ sub]) => [item, sub.source, JSON.stringify(sub.params), sub.sid]),
    );
    $("unitop-title").focus();
    await this.chart.open(u.name, items.map(([item]) => item));
  }

  leave() {
    this.chart.pause();
  }
}
