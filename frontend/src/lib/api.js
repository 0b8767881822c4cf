// Small fetch helpers shared by the study page and the upload widget.
//
// The portal's API answers errors as {"error": {"code", "message", ...}}; DRF's own
// authentication/permission failures may still come back as {"detail": "..."}. Both are
// turned into an ApiError whose message can be shown to the user as is: the server translates
// it into the request's language, so the page keeps no table of its own by error code. Only the
// failures without a portal answer (no connection, a proxy's bare error page) get a message here.
import { gettext, interpolate } from "./i18n.js";

export class ApiError extends Error {
  constructor(status, code, message, payload = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.payload = payload;
  }
}

export function csrfTokenFromCookie() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

/** Build an ApiError from a parsed (or unparsable) error response body. */
export function errorFromResponse(status, statusText, data) {
  const envelope = data && typeof data === "object" ? data.error : null;
  if (envelope && typeof envelope === "object") {
    return new ApiError(status, envelope.code || `http_${status}`, envelope.message || statusText || `HTTP ${status}`, envelope);
  }
  if (data && typeof data === "object" && typeof data.detail === "string") {
    return new ApiError(status, `http_${status}`, data.detail, data);
  }
  return new ApiError(
    status,
    `http_${status}`,
    interpolate(gettext("The server answered with an error (HTTP %(status)s)."), { status }),
    data,
  );
}

/** The ApiError (status 0) of a request that got no answer at all; the browser's own text stays in `cause`. */
function networkError(err) {
  const error = new ApiError(0, "network_error", gettext("The server could not be reached; check the connection and try again."));
  error.cause = err;
  return error;
}

function parseJson(text) {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch (_) {
    return null;
  }
}

/**
 * Send a JSON request with the session cookie and, for unsafe methods, the CSRF header.
 * Resolve with the parsed body (null when empty); reject with ApiError on HTTP >= 400
 * or a network failure (status 0).
 */
export async function requestJson(url, { method = "GET", body, csrfToken = "", signal } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD") headers["X-CSRFToken"] = csrfToken || csrfTokenFromCookie();
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
      signal,
    });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw networkError(err);
  }
  const data = parseJson(await response.text());
  if (!response.ok) throw errorFromResponse(response.status, response.statusText, data);
  return data;
}

/** Fetch a binary resource (a NIfTI volume); reject with ApiError like requestJson. */
/**
 * GET a binary body. With onProgress, it is read as a stream and onProgress({received, total})
 * is called per chunk (total is null when the server sends no Content-Length).
 */
export async function fetchArrayBuffer(url, { signal, onProgress } = {}) {
  let response;
  try {
    response = await fetch(url, { credentials: "same-origin", signal });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw networkError(err);
  }
  if (!response.ok) {
    throw errorFromResponse(response.status, response.statusText, parseJson(await response.text()));
  }
  if (!onProgress || !response.body || !response.body.getReader) return response.arrayBuffer();
  const length = Number(response.headers.get("Content-Length"));
  const total = Number.isFinite(length) && length > 0 ? length : null;
  const reader = response.body.getReader();
  const chunks = [];
  let received = 0;
  onProgress({ received, total });
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    received += value.byteLength;
    onProgress({ received, total });
  }
  const out = new Uint8Array(received);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out.buffer;
}
