import type { Timers } from "../timers.js";

/** The host's clock and timers. Timers do not keep the process alive on their own. */
export const systemTimers: Timers = {
  now: () => performance.now(),
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    t.unref();
    return () => clearTimeout(t);
  },
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};
