// One websocket to the stream carrying one subscription, opened again after a lost connection: the caller gives
// the subscribe frame each time, so that it can resume with `since`.

import { credential } from "./api.js";

const RETRY_MS = [500, 1000, 2000, 5000];

/**
 * @typedef {object} Handlers
 * @property {() => Record<string, unknown>} subscribe  the subscribe frame to send on each (re)connection
 * @property {(frame: any) => void} frame
 * @property {(delayS: number) => void} lost  the connection dropped; another follows after `delayS`
 * @property {(reason: string) => void} refused  the stream closed it for good (1008: not allowed)
 */

export class StreamSocket {
  /**
   * @param {string} streamUrl  e.g. `wss://stream.example.com`
   * @param {Handlers} on
   */
  constructor(streamUrl, on) {
    this.streamUrl = streamUrl.replace(/^http/, "ws").replace(/\/$/, "");
    this.on = on;
    /** @type {WebSocket | null} */
    this.ws = null;
    this.attempt = 0;
    this.closed = true;
  }

  open() {
    this.close();
    this.closed = false;
    this.attempt = 0;
    this.connect();
  }

  close() {
    this.closed = true;
    this.ws?.close(1000);
    this.ws = null;
  }

  /** The subscription is live again: the next loss starts with the shortest delay. */
  settled() {
    this.attempt = 0;
  }

  connect() {
    // Browsers cannot set headers on a websocket: the credential travels as a subprotocol (`bearer.<token>`),
    // never in a URL that proxies and histories keep; the stream selects `tributary`.
    const ws = new WebSocket(`${this.streamUrl}/ws`, ["tributary", `bearer.${credential() ?? ""}`]);
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify(this.on.subscribe()));
    ws.onmessage = (msg) => this.ws === ws && this.on.frame(JSON.parse(msg.data));
    ws.onclose = (ev) => {
      if (this.ws !== ws || this.closed) return;
      if (ev.code === 1008) {
        this.on.refused(ev.reason || "not allowed");
        return;
      }
      const delay = RETRY_MS[Math.min(this.attempt++, RETRY_MS.length - 1)];
      this.on.lost(delay / 1000);
      setTimeout(() => !this.closed && this.ws === ws && this.connect(), delay);
    };
  }
}
