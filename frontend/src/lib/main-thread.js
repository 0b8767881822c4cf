// How long the main thread was blocked while something (the volume) loaded.
//
// The study page records its own volume load so that a browser test can read back, with
// page.evaluate, whether the page stayed responsive (the Content-Security-Policy forbids scripts
// injected by a test, and a PerformanceObserver registered after the load would miss it).

/**
 * Start recording the main thread's blocks: the Long Tasks API's entries (tasks over 50 ms,
 * https://w3c.github.io/longtasks/) and the largest gap between two animation frames.
 *
 * Returns `{ record, stop }`. `record` is a plain object, updated in place:
 * `startedAt` / `finishedAt` (ms, `performance.now()` clock), `longTasks` (`{ startMs, durationMs }`
 * each), `frames` (animation frames seen), `maxFrameGapMs`, `marks` (`mark(name)`: ms since the start) and
 * `done`. `stop()` sets `finishedAt`
 * and keeps watching for `settleMs` more (a long task is reported only after it ends, so the one
 * that called stop() would otherwise be missed), then sets `done`; it may be called more than once.
 */
export function watchMainThread({ settleMs = 1000 } = {}) {
  const record = {
    startedAt: performance.now(), finishedAt: null, longTasks: [], frames: 0, maxFrameGapMs: 0, done: false, marks: {},
  };
  const keep = (entries) => {
    for (const entry of entries) record.longTasks.push({ startMs: entry.startTime, durationMs: entry.duration });
  };
  let observer = null;
  const types = (typeof PerformanceObserver !== "undefined" && PerformanceObserver.supportedEntryTypes) || [];
  if (types.includes("longtask")) {
    observer = new PerformanceObserver((list) => keep(list.getEntries()));
    observer.observe({ type: "longtask" });
  }
  let running = true;
  let last = record.startedAt;
  const tick = (now) => {
    if (!running) return;
    record.maxFrameGapMs = Math.max(record.maxFrameGapMs, now - last);
    last = now;
    record.frames += 1;
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  const stop = () => {
    if (record.finishedAt !== null) return;
    record.finishedAt = performance.now();
    setTimeout(() => {
      running = false;
      if (observer) {
        keep(observer.takeRecords());
        observer.disconnect();
      }
      record.done = true;
    }, settleMs);
  };
  const mark = (name) => {
    record.marks[name] = performance.now() - record.startedAt;
  };
  return { record, stop, mark };
}
