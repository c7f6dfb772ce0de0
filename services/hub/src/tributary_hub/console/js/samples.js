// A unitop's sample history for the chart, from the hub's raw samples read (JSON pages, ordered by time).
// This is the one function to switch to `GET /unitops/{name}/samples:plot?start&end&intervals=N` (per interval
// first/last/min/max) once the hub has it: a range then costs one request whatever its length.

import { json } from "./api.js";

const PAGE = 1000;
const MAX_PAGES = 20; // raw rows are the whole range: a long one is cut here (and said so) until the plot read

/** @typedef {{t: number[], v: (number | null)[]}} Series  times in seconds (uPlot's), values plotted */

/**
 * @param {string} name
 * @param {number} startMs
 * @param {number} endMs
 * @returns {Promise<{series: Record<string, Series>, truncated: boolean}>}
 */
export async function backfill(name, startMs, endMs) {
  /** @type {Record<string, Series>} */
  const series = {};
  /** @type {string | null} */
  let cursor = null;
  let pages = 0;
  do {
    const q = new URLSearchParams({ start: new Date(startMs).toISOString(), end: new Date(endMs).toISOString(), limit: String(PAGE) });
    if (cursor) q.set("cursor", cursor);
    const page = await json("GET", `/unitops/${encodeURIComponent(name)}/samples?${q}`);
    for (const row of page.items) {
      const s = (series[row.item] ??= { t: [], v: [] });
      s.t.push(seconds(row.t));
      s.v.push(plotted(row.v));
    }
    cursor = page.next;
  } while (cursor && ++pages < MAX_PAGES);
  return { series, truncated: Boolean(cursor) };
}

/** @param {string} t  RFC 3339 (microseconds are more than a chart shows) */
export const seconds = (t) => Date.parse(t) / 1000;

/**
 * What a chart can draw of a sample's value: numbers, booleans as 0/1; anything else is a gap.
 * @param {unknown} v
 * @returns {number | null}
 */
export const plotted = (v) => (typeof v === "number" ? v : typeof v === "boolean" ? Number(v) : null);
