// Live tail over the stream's websocket: one subscription at a time, pause/resume (events kept while paused),
// gap notices, and after a lost connection a new one that resumes with `since` = the last event seen.

import { credential } from "./api.js";

const MAX_SHOWN = 200;
const RETRY_MS = [500, 1000, 2000, 5000];

export class Tail {
  /**
   * @param {string} streamUrl  e.g. `wss://stream.example.com`
   * @param {{list: HTMLOListElement, state: HTMLElement, pause: HTMLButtonElement}} els
   */
  constructor(streamUrl, els) {
    this.streamUrl = streamUrl.replace(/^http/, "ws").replace(/\/$/, "");
    this.els = els;
    /** @type {WebSocket | null} */
    this.ws = null;
    this.pattern = "";
    /** @type {{id?: string, time?: string} | null} */
    this.last = null;
    this.paused = false;
    /** @type {any[]} */
    this.held = [];
    this.attempt = 0;
    this.closed = true;
  }

  /** @param {string} pattern */
  start(pattern) {
    this.stop();
    this.pattern = pattern;
    this.last = null;
    this.closed = false;
    this.els.list.replaceChildren();
    this.els.pause.disabled = false;
    this.connect();
  }

  stop() {
    this.closed = true;
    this.ws?.close(1000);
    this.ws = null;
  }

  togglePause() {
    this.paused = !this.paused;
    this.els.pause.textContent = this.paused ? "Resume" : "Pause";
    this.els.pause.setAttribute("aria-pressed", String(this.paused));
    if (!this.paused) {
      for (const frame of this.held.splice(0)) this.show(frame);
    }
    this.state(this.paused ? `paused (${this.held.length} held)` : `live: ${this.pattern}`);
  }

  connect() {
    // Browsers cannot set headers on a websocket: the credential travels as a subprotocol (`bearer.<token>`),
    // never in a URL that proxies and histories keep; the stream selects `tributary`.
    const ws = new WebSocket(`${this.streamUrl}/ws`, ["tributary", `bearer.${credential() ?? ""}`]);
    this.ws = ws;
    ws.onopen = () => {
      /** @type {Record<string, unknown>} */
      const events = { pattern: this.pattern };
      if (this.last) events.since = this.last;
      ws.send(JSON.stringify({ op: "subscribe", id: "tail", events }));
    };
    ws.onmessage = (msg) => this.frame(JSON.parse(msg.data));
    ws.onclose = (ev) => {
      if (this.ws !== ws || this.closed) return;
      if (ev.code === 1008) {
        this.state(`closed by the stream: ${ev.reason || "not allowed"}`);
        return;
      }
      const delay = RETRY_MS[Math.min(this.attempt++, RETRY_MS.length - 1)];
      this.state(`connection lost; reconnecting in ${delay / 1000} s${this.last ? " (resuming after the last event)" : ""}`);
      setTimeout(() => !this.closed && this.ws === ws && this.connect(), delay);
    };
  }

  /** @param {any} f */
  frame(f) {
    if (f.type === "subscribed") {
      this.attempt = 0;
      this.state(this.last ? `live again: ${this.pattern} (resumed since ${this.last.id ?? this.last.time})` : `live: ${this.pattern}`);
    } else if (f.type === "event") {
      this.last = { id: f.event.id, time: f.event.time };
      if (this.paused) {
        this.held.push(f);
        this.state(`paused (${this.held.length} held)`);
      } else this.show(f);
    } else if (f.type === "gap") {
      if (f.last) this.last = f.last;
      this.show(f);
    } else if (f.type === "error") {
      this.state(`error: ${f.code}: ${f.message}`);
    }
  }

  /** @param {any} f */
  show(f) {
    const li = document.createElement("li");
    if (f.type === "gap") {
      li.className = "gap";
      li.textContent = `gap (${f.reason}): events after ${f.last?.id ?? f.last?.time ?? "the start"} may be missing`;
    } else {
      li.className = "event";
      const pre = document.createElement("pre");
      pre.textContent = JSON.stringify(f.event, null, 2);
      li.append(pre);
    }
    this.els.list.prepend(li);
    while (this.els.list.children.length > MAX_SHOWN) this.els.list.lastElementChild?.remove();
  }

  /** @param {string} text */
  state(text) {
    this.els.state.textContent = text;
  }
}
