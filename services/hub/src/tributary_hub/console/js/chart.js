// A live chart of a unitop's items (uPlot, loaded only when the hub serves it): the last minutes back-filled from
// history, then samples over the stream websocket. Dragging across the chart, or the range inputs, show a past
// range instead (history re-queried for it); "Live" follows again.

import { backfill, plotted, seconds } from "./samples.js";
import { StreamSocket } from "./stream.js";
import { failed, localValue } from "./ui.js";

const LIVE_WINDOW_MS = 5 * 60_000;
const MAX_POINTS = 20_000; // per item while following: the oldest drop out
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];

/** @typedef {import("./samples.js").Series} Series */
/** @typedef {typeof import("../vendor/uPlot.js")} UPlot */

/** @type {Promise<UPlot> | null} */
let loading = null;

/** The library (a classic script defining the global `uPlot`) and its stylesheet, fetched once, for the first chart. */
function library() {
  loading ??= new Promise((resolve, reject) => {
    document.head.append(Object.assign(document.createElement("link"), { rel: "stylesheet", href: "vendor/uPlot.min.css" }));
    const script = Object.assign(document.createElement("script"), { src: "vendor/uPlot.min.js" });
    script.onload = () => resolve(/** @type {any} */ (window).uPlot);
    script.onerror = () => reject(new Error("the chart library did not load"));
    document.head.append(script);
  });
  return loading;
}

export class UnitopChart {
  /**
   * @param {{box: HTMLElement, state: HTMLElement, start: HTMLInputElement, end: HTMLInputElement, live: HTMLButtonElement}} els
   * @param {string | null} streamUrl
   * @param {boolean} available  whether the hub serves the chart library
   */
  constructor(els, streamUrl, available) {
    this.els = els;
    this.available = available;
    this.name = "";
    /** @type {string[]} */
    this.items = [];
    /** @type {Record<string, Series>} */
    this.series = {};
    /** @type {Record<string, string>} the last sample time seen per item: where a new connection resumes */
    this.last = {};
    /** @type {UPlot | null} */
    this.lib = null;
    /** @type {InstanceType<UPlot> | null} */
    this.plot = null;
    this.following = false;
    this.count = 0;
    this.pending = 0;
    this.socket = streamUrl
      ? new StreamSocket(streamUrl, {
          subscribe: () => ({ op: "subscribe", id: "chart", unitop: { name: this.name, ...(Object.keys(this.last).length ? { since: { items: this.last } } : {}) } }),
          frame: (f) => this.frame(f),
          lost: (s) => this.state(`connection lost; reconnecting in ${s} s`),
          refused: (reason) => this.state(`closed by the stream: ${reason}`),
        })
      : null;
    window.addEventListener("resize", () => this.plot?.setSize(this.size()));
  }

  /**
   * @param {string} name
   * @param {string[]} items
   */
  async open(name, items) {
    this.close();
    this.name = name;
    this.items = items;
    this.plot?.destroy();
    this.plot = null;
    if (!this.available) {
      this.state("no chart: the chart library is not installed on this hub (`make console` installs it)");
      return;
    }
    this.lib = await library();
    this.series = {};
    this.plot = new this.lib(this.options(this.lib), this.data(), this.els.box);
    await this.live();
  }

  close() {
    this.following = false;
    this.socket?.close();
  }

  /** The view is left: no subscription for a chart nobody sees; "Live" follows again. */
  pause() {
    if (!this.following) return;
    this.close();
    this.els.live.setAttribute("aria-pressed", "false");
    this.state("paused while the view was left: Live follows again");
  }

  /** Follow: the last minutes from history, then live samples (those arriving meanwhile merged in). */
  async live() {
    if (!this.plot) return;
    this.close();
    const end = Date.now();
    const start = end - LIVE_WINDOW_MS;
    this.els.start.value = localValue(start);
    this.els.end.value = "";
    this.els.live.setAttribute("aria-pressed", "true");
    this.series = {};
    this.last = {};
    this.count = 0;
    this.following = true;
    if (this.socket) this.socket.open();
    else this.state("no stream configured for this console: history only");
    const { series } = await backfill(this.name, start, end);
    if (!this.following) return; // a range was asked for meanwhile
    for (const [item, s] of Object.entries(series)) {
      s.t.forEach((t, i) => this.add(item, t, s.v[i]));
      this.count += s.t.length;
    }
    this.draw();
  }

  /**
   * @param {number} startMs
   * @param {number} endMs
   */
  async range(startMs, endMs) {
    if (!this.plot) return;
    if (!(endMs > startMs)) {
      this.state("the range's end must be after its start");
      return;
    }
    this.close();
    this.els.live.setAttribute("aria-pressed", "false");
    this.els.start.value = localValue(startMs);
    this.els.end.value = localValue(endMs);
    const { series } = await backfill(this.name, startMs, endMs);
    if (this.following) return; // "Live" was pressed meanwhile
    this.series = series;
    this.draw();
    const n = Object.values(series).reduce((sum, s) => sum + s.t.length, 0);
    const span = `${new Date(startMs).toISOString()} – ${new Date(endMs).toISOString()}`;
    this.state(`range ${span}: ${n} samples`);
  }

  /** @param {any} f */
  frame(f) {
    if (f.type === "subscribed") {
      this.socket?.settled();
      // Sent again when the unitop changes: a chart of its new items.
      const items = Object.keys(f.unitop?.items ?? {});
      if (this.lib && items.length && [...items].sort().join("\n") !== [...this.items].sort().join("\n")) {
        this.items = items;
        this.plot?.destroy();
        this.plot = new this.lib(this.options(this.lib), this.data(), this.els.box);
      }
      this.shown();
    } else if (f.type === "samples" && this.following) {
      for (const s of f.samples) this.add(f.item, seconds(s.t), plotted(s.v));
      if (f.samples.length) this.last[f.item] = f.samples[f.samples.length - 1].t;
      this.count += f.samples.length;
      if (!this.pending) this.pending = requestAnimationFrame(() => this.draw());
    } else if (f.type === "gap") {
      this.state(`gap (${f.reason}): samples may be missing`);
    } else if (f.type === "unsubscribed") {
      this.state(`the stream ended the subscription: ${f.reason ?? "unsubscribed"}`);
    } else if (f.type === "error") {
      this.state(`error: ${f.code}: ${f.message}`);
    }
  }

  /**
   * One sample into its item's series, kept in time order without duplicates.
   * @param {string} item
   * @param {number} t
   * @param {number | null} v
   */
  add(item, t, v) {
    const s = (this.series[item] ??= { t: [], v: [] });
    let i = s.t.length;
    while (i > 0 && s.t[i - 1] > t) i--;
    if (i > 0 && s.t[i - 1] === t) return;
    s.t.splice(i, 0, t);
    s.v.splice(i, 0, v);
    if (s.t.length > MAX_POINTS) {
      s.t.splice(0, s.t.length - MAX_POINTS);
      s.v.splice(0, s.v.length - MAX_POINTS);
    }
  }

  draw() {
    this.pending = 0;
    this.plot?.setData(this.data());
    if (this.following) this.shown();
  }

  shown() {
    this.state(`live: ${this.count} samples of ${this.items.length} item${this.items.length === 1 ? "" : "s"}`);
  }

  /** @returns {import("../vendor/uPlot.js").AlignedData} the items' samples on one time axis */
  data() {
    const tables = this.items.map((item) => /** @type {[number[], (number | null)[]]} */ ([this.series[item]?.t ?? [], this.series[item]?.v ?? []]));
    if (!this.lib || !tables.some(([t]) => t.length)) return [[], ...this.items.map(() => [])];
    return this.lib.join(tables);
  }

  /**
   * @param {UPlot} uPlot
   * @returns {import("../vendor/uPlot.js").Options}
   */
  options(uPlot) {
    return {
      ...this.size(),
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
      scales: { x: { time: true } },
      series: [
        { label: "time (UTC)" },
        ...this.items.map((label, i) => ({ label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true, points: { show: false } })),
      ],
      cursor: { drag: { x: true, y: false, setScale: false } },
      hooks: {
        // A drag across the chart zooms into that range: history re-queried for it.
        setSelect: [
          (u) => {
            if (u.select.width < 2) return;
            const from = u.posToVal(u.select.left, "x");
            const to = u.posToVal(u.select.left + u.select.width, "x");
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            this.range(from * 1000, to * 1000).catch(failed);
          },
        ],
      },
    };
  }

  size() {
    return { width: Math.max(200, this.els.box.clientWidth), height: 280 };
  }

  /** @param {string} text */
  state(text) {
    this.els.state.textContent = text;
  }
}
