import type { Clock } from "../clock.js";

/** The host's monotonic clock. */
export const systemClock: Clock = { now: () => performance.now() };
