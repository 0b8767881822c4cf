// The follow-up chat page (phone and desktop).
//
// The database is the truth: every message has an id, and the page remembers the highest id it
// has shown. Whenever the socket (re)opens it sends {"type": "resume", "last_seen_id"} and the
// server replays everything after it, so a dropped connection loses nothing. Messages typed while
// offline wait in an outbox with a client id; the server stores a client id once, so re-sending
// after a reconnect never duplicates.
import { ReconnectingSocket, websocketUrl } from "./lib/socket.js";
import { csrfTokenFromCookie, requestJson } from "./lib/api.js";
import { gettext, interpolate, labelOf } from "./lib/i18n.js";

const config = JSON.parse(document.getElementById("chat-config").textContent);
const SOCKET_STATE = {
  open: () => gettext("Connected"),
  connecting: () => gettext("Connecting…"),
  closed: () => gettext("Offline, reconnecting…"),
  stopped: () => gettext("Disconnected"),
};
const LINK_TYPE = {
  report: () => gettext("Report"),
  study: () => gettext("Study"),
};


const els = {
  messages: document.getElementById("messages"),
  input: document.getElementById("message-input"),
  compose: document.getElementById("compose"),
  state: document.getElementById("connection-state"),
  typing: document.getElementById("typing"),
  older: document.getElementById("load-older"),
  attach: document.getElementById("attach-input"),
  link: document.getElementById("link-select"),
  ask: document.getElementById("ask-assistant"),
  search: document.getElementById("search-input"),
  searchButton: document.getElementById("search-button"),
  searchResults: document.getElementById("search-results"),
};

const state = {
  lastSeenId: 0,
  oldestId: null,
  rendered: new Map(), // message id -> element
  outbox: new Map(), // client id -> {frame, element}
  readBy: new Map(), // user id -> read id (other members)
  deliveredTo: new Map(),
  typingTimer: null,
  lastTypingSent: 0,
};
window.yixinChat = state;

function newClientId() {
  if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
  return `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

function formatTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return `${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")} ${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

function messageBody(payload, element) {
  if (payload.attachment) {
    const a = document.createElement("a");
    a.href = payload.attachment.url;
    a.target = "_blank";
    a.rel = "noopener";
    if (payload.attachment.content_type.startsWith("image/")) {
      const img = document.createElement("img");
      img.src = payload.attachment.url;
      img.alt = payload.attachment.name;
      a.append(img);
    } else {
      a.textContent = `📄 ${payload.attachment.name}`;
    }
    element.append(a);
  } else if (payload.link) {
    const a = document.createElement("a");
    const base = payload.link.type === "report" ? config.report_url : config.study_url;
    a.href = `${base}${payload.link.id}${base.endsWith("#report-") || base.endsWith("#study-") ? "" : "/"}`;
    a.className = "record-link";
    a.textContent = `${labelOf(LINK_TYPE, payload.link.type)} #${payload.link.id}`;
    element.append(a);
    if (payload.body) element.append(document.createTextNode(`\n${payload.body}`));
  } else {
    element.append(document.createTextNode(payload.body));
  }
}

function renderMessage(payload, { prepend = false } = {}) {
  if (state.rendered.has(payload.id)) return state.rendered.get(payload.id);
  let element = null;
  if (payload.client_id && state.outbox.has(payload.client_id) && payload.sender && payload.sender.id === config.user_id) {
    element = state.outbox.get(payload.client_id).element;
    state.outbox.delete(payload.client_id);
    element.classList.remove("pending", "failed");
    element.textContent = "";
  } else {
    element = document.createElement("div");
  }
  const mine = payload.sender && payload.sender.id === config.user_id;
  element.className = `fu-msg${mine ? " mine" : ""}${payload.kind === "assistant" ? " assistant" : ""}`;
  element.dataset.id = String(payload.id);
  messageBody(payload, element);
  const meta = document.createElement("span");
  meta.className = "fu-meta";
  const who = payload.kind === "assistant" ? gettext("Knowledge-graph assistant") : payload.sender ? payload.sender.name : "";
  meta.textContent = `${mine ? "" : `${who} · `}${formatTime(payload.created_at)}`;
  if (mine) {
    const receipt = document.createElement("span");
    receipt.className = "receipt";
    meta.append(receipt);
  }
  element.append(meta);
  if (payload.kind === "assistant" && payload.meta && payload.meta.handover) {
    const handover = document.createElement("span");
    handover.className = "fu-handover";
    handover.textContent = gettext("Handed over to your doctor");
    element.append(handover);
  }
  state.rendered.set(payload.id, element);
  element.remove();
  if (prepend) {
    els.older.after(element);
  } else {
    // Keep id order: a replayed message may arrive after newer ones, and messages still in the
    // outbox (no id yet) stay at the end.
    const later = [...els.messages.querySelectorAll(".fu-msg[data-id]")].find((el) => Number(el.dataset.id) > payload.id);
    const firstPending = els.messages.querySelector(".fu-msg.pending");
    if (later) later.before(element);
    else if (firstPending) firstPending.before(element);
    else els.messages.append(element);
  }
  updateReceipts();
  return element;
}

function updateReceipts() {
  const readMax = Math.max(0, ...state.readBy.values());
  const deliveredMax = Math.max(0, ...state.deliveredTo.values());
  els.messages.querySelectorAll(".fu-msg.mine[data-id]").forEach((el) => {
    const id = Number(el.dataset.id);
    const receipt = el.querySelector(".receipt");
    if (!receipt) return;
    receipt.textContent = id <= readMax ? ` · ${gettext("Read")}` : id <= deliveredMax ? ` · ${gettext("Delivered")}` : "";
    el.dataset.receipt = id <= readMax ? "read" : id <= deliveredMax ? "delivered" : "sent";
  });
}

function scrollToEnd() {
  els.messages.scrollTop = els.messages.scrollHeight;
}

function acknowledge() {
  if (!socket.isOpen || !state.lastSeenId) return;
  socket.ws.send(JSON.stringify({ type: document.visibilityState === "visible" ? "read" : "delivered", up_to: state.lastSeenId }));
}

function onMessage(frame) {
  switch (frame.type) {
    case "message": {
      const nearEnd = els.messages.scrollHeight - els.messages.scrollTop - els.messages.clientHeight < 80;
      renderMessage(frame.message);
      state.lastSeenId = Math.max(state.lastSeenId, frame.message.id);
      document.body.dataset.lastSeenId = String(state.lastSeenId);
      if (nearEnd || (frame.message.sender && frame.message.sender.id === config.user_id)) scrollToEnd();
      if (frame.message.sender && frame.message.sender.id !== config.user_id) {
        // The message the other member was typing has arrived: "typing…" ends with it.
        clearTimeout(state.typingTimer);
        els.typing.textContent = "";
      }
      if (!frame.message.sender || frame.message.sender.id !== config.user_id) {
        clearTimeout(state.ackTimer);
        state.ackTimer = setTimeout(acknowledge, 150);
      }
      break;
    }
    case "resumed":
      document.body.dataset.resumed = String(Number(document.body.dataset.resumed || 0) + 1);
      acknowledge();
      flushOutbox();
      break;
    case "ack": {
      const pending = state.outbox.get(frame.client_id);
      if (pending) pending.element.dataset.acked = String(frame.message_id);
      break;
    }
    case "receipt":
      if (frame.user_id !== config.user_id) {
        state.readBy.set(frame.user_id, frame.read_id);
        state.deliveredTo.set(frame.user_id, frame.delivered_id);
        updateReceipts();
      }
      break;
    case "typing":
      if (frame.user_id === config.user_id) break;
      els.typing.textContent = frame.is_typing ? interpolate(gettext("%(name)s is typing…"), { name: frame.name }) : "";
      clearTimeout(state.typingTimer);
      if (frame.is_typing) state.typingTimer = setTimeout(() => { els.typing.textContent = ""; }, 5000);
      break;
    case "error": {
      const pending = frame.client_id && state.outbox.get(frame.client_id);
      if (pending) {
        pending.element.classList.add("failed");
        pending.element.title = frame.message;
        pending.failed = true;
      }
      showNotice(frame.message);
      break;
    }
    default:
      break;
  }
}

function showNotice(text) {
  let notice = document.getElementById("chat-notice");
  if (!notice) {
    notice = document.createElement("div");
    notice.id = "chat-notice";
    notice.className = "alert alert-error";
    els.messages.before(notice);
  }
  notice.textContent = text;
  clearTimeout(state.noticeTimer);
  state.noticeTimer = setTimeout(() => notice.remove(), 6000);
}

function flushOutbox() {
  if (!socket.isOpen) return;
  for (const entry of state.outbox.values()) {
    if (entry.failed) continue;
    socket.ws.send(JSON.stringify(entry.frame));
  }
}

function queue(frame, previewText) {
  frame.client_id = newClientId();
  const element = document.createElement("div");
  element.className = "fu-msg mine pending";
  element.textContent = previewText;
  const meta = document.createElement("span");
  meta.className = "fu-meta";
  meta.textContent = gettext("Sending…");
  element.append(meta);
  els.messages.append(element);
  scrollToEnd();
  state.outbox.set(frame.client_id, { frame, element });
  if (socket.isOpen) socket.ws.send(JSON.stringify(frame));
}

const socket = new ReconnectingSocket(websocketUrl(config.websocket), {
  baseDelayMs: 700,
  maxDelayMs: 8000,
  onMessage,
  onOpen: () => {
    socket.ws.send(JSON.stringify({ type: "resume", last_seen_id: state.lastSeenId }));
  },
  onStateChange: (s) => {
    els.state.dataset.state = s;
    els.state.textContent = labelOf(SOCKET_STATE, s);
    document.body.dataset.socketState = s;
  },
});
state.socket = socket;

async function loadInitial() {
  const page = await requestJson(`${config.messages_api}?limit=50`);
  page.results.forEach((m) => renderMessage(m));
  if (page.results.length) {
    state.lastSeenId = Math.max(state.lastSeenId, page.results[page.results.length - 1].id);
    state.oldestId = page.results[0].id;
  }
  els.older.hidden = !page.has_more;
  document.body.dataset.lastSeenId = String(state.lastSeenId);
  scrollToEnd();
}

els.older.addEventListener("click", async () => {
  const page = await requestJson(`${config.messages_api}?limit=50&before_id=${state.oldestId}`);
  [...page.results].reverse().forEach((m) => renderMessage(m, { prepend: true }));
  if (page.results.length) state.oldestId = page.results[0].id;
  els.older.hidden = !page.has_more;
});

els.compose.addEventListener("submit", (event) => {
  event.preventDefault();
  const body = els.input.value.trim();
  if (!body) return;
  els.input.value = "";
  queue({ type: "send", body }, body);
});

els.input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    els.compose.requestSubmit();
  }
});

els.input.addEventListener("input", () => {
  const now = Date.now();
  if (socket.isOpen && now - state.lastTypingSent > 2000) {
    state.lastTypingSent = now;
    socket.ws.send(JSON.stringify({ type: "typing", is_typing: true }));
  }
});

if (els.link) {
  els.link.addEventListener("change", () => {
    const [type, id] = els.link.value.split(":");
    if (!type) return;
    queue({ type: "send", link_type: type, link_id: Number(id), body: "" }, els.link.selectedOptions[0].textContent);
    els.link.value = "";
  });
}

els.ask.addEventListener("click", () => {
  const question = els.input.value.trim() || (window.prompt(gettext("Your question for the assistant:")) || "").trim();
  if (!question) return;
  els.input.value = "";
  queue({ type: "ask_assistant", question }, question);
});

els.attach.addEventListener("change", async () => {
  const file = els.attach.files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  form.append("client_id", newClientId());
  const response = await fetch(config.attachments_api, {
    method: "POST", body: form, credentials: "same-origin", headers: { "X-CSRFToken": csrfTokenFromCookie() },
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    showNotice((data && data.error && data.error.message) || `HTTP ${response.status}`);
  } else {
    renderMessage(data);
    state.lastSeenId = Math.max(state.lastSeenId, data.id);
    scrollToEnd();
  }
  els.attach.value = "";
});

function highlight(text, query) {
  const fragment = document.createDocumentFragment();
  const lower = text.toLowerCase();
  const q = query.toLowerCase();
  let start = 0;
  let index = lower.indexOf(q);
  while (index >= 0 && q) {
    fragment.append(document.createTextNode(text.slice(start, index)));
    const mark = document.createElement("mark");
    mark.textContent = text.slice(index, index + q.length);
    fragment.append(mark);
    start = index + q.length;
    index = lower.indexOf(q, start);
  }
  fragment.append(document.createTextNode(text.slice(start)));
  return fragment;
}

async function runSearch() {
  const query = els.search.value.trim();
  if (!query) {
    els.searchResults.hidden = true;
    return;
  }
  const page = await requestJson(`${config.messages_api}?q=${encodeURIComponent(query)}&limit=50`);
  els.searchResults.textContent = "";
  if (!page.results.length) els.searchResults.textContent = gettext("No message found.");
  page.results.forEach((m) => {
    const row = document.createElement("div");
    row.className = "fu-msg search-hit";
    row.dataset.id = String(m.id);
    row.append(highlight(m.body, query));
    const meta = document.createElement("span");
    meta.className = "fu-meta";
    meta.textContent = `${m.sender ? m.sender.name : gettext("Knowledge-graph assistant")} · ${formatTime(m.created_at)}`;
    row.append(meta);
    els.searchResults.append(row);
  });
  els.searchResults.hidden = false;
}
els.searchButton.addEventListener("click", runSearch);
els.search.addEventListener("keydown", (event) => {
  if (event.key === "Enter") {
    event.preventDefault();
    runSearch();
  }
});

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") {
    socket.reconnectNow();
    acknowledge();
  }
});
window.addEventListener("online", () => socket.reconnectNow());
// A broadcast can be dropped by a full channel: ask for anything newer now and then.
setInterval(() => {
  if (socket.isOpen) socket.ws.send(JSON.stringify({ type: "resume", last_seen_id: state.lastSeenId }));
}, 30000);

// Fill the screen below the header, so the compose box stays above a phone's keyboard and edge.
function fitHeight() {
  const chat = document.getElementById("chat");
  const top = chat.getBoundingClientRect().top + window.scrollY;
  chat.style.height = `${Math.max(320, window.innerHeight - top - 8)}px`;
}
fitHeight();
window.addEventListener("resize", fitHeight);

loadInitial()
  .catch((err) => showNotice(err.message))
  .finally(() => socket.start());
