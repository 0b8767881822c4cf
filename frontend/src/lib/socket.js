// A WebSocket that reconnects with capped exponential backoff.
//
// The socket only notifies: the caller re-reads state through the API whenever a
// connection (re)opens, so nothing is lost while it was down.

import { gettext } from "./i18n.js";

/** Labels of a ReconnectingSocket's states for a page's live indicator. */
export const SOCKET_STATE_LABELS = {
  open: () => gettext("Live"),
  connecting: () => gettext("Connecting…"),
  closed: () => gettext("Reconnecting…"),
};

export function websocketUrl(path) {
  if (/^wss?:\/\//.test(path)) return path;
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}${path.startsWith("/") ? "" : "/"}${path}`;
}

export class ReconnectingSocket {
  /**
   * @param {string} url absolute ws:// or wss:// URL
   * @param {{onMessage?: Function, onOpen?: Function, onStateChange?: Function,
   *          baseDelayMs?: number, maxDelayMs?: number}} options
   *   onOpen(isReconnect) runs on every successful open; onStateChange(state) gets
   *   "connecting" | "open" | "closed" | "stopped".
   */
  constructor(url, { onMessage, onOpen, onStateChange, baseDelayMs = 1000, maxDelayMs = 30000 } = {}) {
    this.url = url;
    this.onMessage = onMessage || (() => {});
    this.onOpen = onOpen || (() => {});
    this.onStateChange = onStateChange || (() => {});
    this.baseDelayMs = baseDelayMs;
    this.maxDelayMs = maxDelayMs;
    this.attempt = 0;
    this.everOpened = false;
    this.stopped = false;
    this.ws = null;
    this.timer = null;
    this.state = "closed";
  }

  get isOpen() {
    return this.state === "open";
  }

  start() {
    this.stopped = false;
    this.connect();
    return this;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
    this.setState("stopped");
  }

  /** Skip the remaining backoff (e.g. when the tab becomes visible again). */
  reconnectNow() {
    if (this.stopped || this.state === "open" || this.state === "connecting") return;
    clearTimeout(this.timer);
    this.connect();
  }

  setState(state) {
    this.state = state;
    this.onStateChange(state);
  }

  connect() {
    this.setState("connecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (_) {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      const isReconnect = this.everOpened;
      this.everOpened = true;
      this.attempt = 0;
      this.setState("open");
      this.onOpen(isReconnect);
    };
    ws.onmessage = (event) => {
      let data;
      try {
        data = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      this.onMessage(data);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      this.setState("closed");
      this.scheduleReconnect();
    };
    // onerror is always followed by onclose, which schedules the retry.
    ws.onerror = () => {};
  }

  scheduleReconnect() {
    if (this.stopped) return;
    const exp = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** this.attempt);
    const delay = Math.round(exp * (0.8 + Math.random() * 0.4));
    this.attempt += 1;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }
}
