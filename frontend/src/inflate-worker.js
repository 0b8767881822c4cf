// Web Worker: inflate a gzip-compressed buffer away from the page's main thread.
//
// Chromium runs a DecompressionStream on the thread that uses it, so NiiVue inflating a 34 MB
// .nii.gz on the page blocked it for the whole inflate (a single long task). Here the same
// DecompressionStream runs on the worker's thread. Message in: { buffer } (an ArrayBuffer holding
// gzip data); message out: { buffer } (the inflated bytes, transferred) or { error } (a message).
self.onmessage = async (event) => {
  try {
    const stream = new Blob([event.data.buffer]).stream().pipeThrough(new DecompressionStream("gzip"));
    const inflated = await new Response(stream).arrayBuffer();
    self.postMessage({ buffer: inflated }, [inflated]);
  } catch (err) {
    self.postMessage({ error: String((err && err.message) || err) });
  }
};
