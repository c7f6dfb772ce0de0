// A unitop's sample history for the chart, from the hub's plot read (`samples:plot`): per interval the first,
// last, min and max sample of each item, so one request of `intervals` (about the chart's width in pixels) draws
// every peak of a range of any length.

import { json } from "./api.js";

const MAX_INTERVALS = 2000; // the hub allows more (HISTORIAN_MAX_INTERVALS); a chart has no more pixels

/** @typedef {{t: number[], v: (number | null)[]}} Series  times in seconds (uPlot's), values plotted */
/** @typedef {{t: string, v: unknown, q?: unknown}} PlotPoint */
/** @typedef {{item: string, start: string, end: string, points: PlotPoint[]}} PlotRow */

/**
 * @param {string} name
 * @param {number} startMs
 * @param {number} endMs
 * @param {number} [intervals]  how many intervals (e.g. the chart's width in pixels)
 * @returns {Promise<{series: Record<string, Series>}>}
 */
export async function backfill(name, startMs, endMs, intervals = 600) {
  /** @type {Record<string, Series>} */
  const series = {};
  const q = new URLSearchParams({
    start: new Date(startMs).toISOString(),
    end: new Date(endMs).toISOString(),
    intervals: String(Math.max(1, Math.min(MAX_INTERVALS, Math.round(intervals)))),
  });
  /** @type {{items: PlotRow[]}} */
  const page = await json("GET", `/unitops/${encodeURIComponent(name)}/samples:plot?${q}`);
  for (const row of page.items) {
    const s = (series[row.item] ??= { t: [], v: [] });
    for (const p of row.points) {
      s.t.push(seconds(p.t));
      s.v.push(plotted(p.v));
    }
  }
  return { series }; // reduced, not cut: every peak of the range is there
}

/** @param {string} t  RFC 3339 (microseconds are more than a chart shows) */
export const seconds = (t) => Date.parse(t) / 1000;

/**
 * What a chart can draw of a sample's value: numbers, booleans as 0/1; anything else is a gap.
 * @param {unknown} v
 * @returns {number | null}
 */
export const plotted = (v) => (typeof v === "number" ? v : typeof v === "boolean" ? Number(v) : null);
