// Inflate a downloaded .nii.gz in a Web Worker (frontend/src/inflate-worker.js) so that the page
// keeps painting and answering while a large volume is decoded.

/** True when `buffer` (an ArrayBuffer) starts with the gzip magic bytes 1f 8b (RFC 1952, 2.3.1). */
export function isGzip(buffer) {
  const head = new Uint8Array(buffer, 0, Math.min(2, buffer.byteLength));
  return head.length === 2 && head[0] === 0x1f && head[1] === 0x8b;
}

/**
 * Inflate `buffer` in a worker loaded from `workerUrl`; resolve the inflated ArrayBuffer, or null
 * when the buffer is not gzip, no worker URL is given, workers are unavailable or the worker fails
 * (the caller then lets NiiVue inflate it on the page, as before). `buffer` is copied to the worker,
 * not transferred, so it stays usable for that fallback.
 */
export function inflateInWorker(buffer, workerUrl) {
  if (!workerUrl || typeof Worker === "undefined" || !isGzip(buffer)) return Promise.resolve(null);
  let worker;
  try {
    worker = new Worker(workerUrl);
  } catch (_) {
    return Promise.resolve(null);
  }
  return new Promise((resolve) => {
    const finish = (result) => {
      worker.terminate();
      resolve(result);
    };
    worker.onmessage = (event) => finish(event.data && event.data.buffer ? event.data.buffer : null);
    worker.onerror = (event) => {
      event.preventDefault();
      finish(null);
    };
    worker.postMessage({ buffer });
  });
}
