// Live tail over the stream's websocket: one subscription at a time, pause/resume (events kept while paused),
// gap notices, and after a lost connection a new one that resumes with `since` = the last event seen.

import { StreamSocket } from "./stream.js";

const MAX_SHOWN = 200;

export class Tail {
  /**
   * @param {string} streamUrl  e.g. `wss://stream.example.com`
   * @param {{list: HTMLOListElement, state: HTMLElement, pause: HTMLButtonElement}} els
   */
  constructor(streamUrl, els) {
    this.els = els;
    this.pattern = "";
    /** @type {{id?: string, time?: string} | null} */
    this.last = null;
    this.paused = false;
    /** @type {any[]} */
    this.held = [];
    this.socket = new StreamSocket(streamUrl, {
      subscribe: () => {
        /** @type {Record<string, unknown>} */
        const events = { pattern: this.pattern };
        if (this.last) events.since = this.last;
        return { op: "subscribe", id: "tail", events };
      },
      frame: (f) => this.frame(f),
      lost: (s) => this.state(`connection lost; reconnecting in ${s} s${this.last ? " (resuming after the last event)" : ""}`),
      refused: (reason) => this.state(`closed by the stream: ${reason}`),
    });
  }

  /** @param {string} pattern */
  start(pattern) {
    this.pattern = pattern;
    this.last = null;
    this.els.list.replaceChildren();
    this.els.pause.disabled = false;
    this.socket.open();
  }

  stop() {
    this.socket.close();
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

  /** @param {any} f */
  frame(f) {
    if (f.type === "subscribed") {
      this.socket.settled();
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
