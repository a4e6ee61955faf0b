// The JavaScript shapes of the values `quota_core::js` hands out. Each is built by one call
// across the wasm boundary (rather than one call per property), which keeps `recordCall` cheap.
// Levels and periods arrive as indices into these tables; `shapes.rs` owns the matching order.

const LEVELS = ["normal", "warning", "critical", "exhausted"];
const PERIODS = ["minute", "hour", "day", "month", "second", "week"];

// A usage, alone or inside a result, as `shape` (shapes.rs's `Shape`) says: 0 the usage alone,
// 1 `{ usage, transition }`, 2 `{ allowed: true, usage, transition }`, 3 `{ allowed: false,
// usage, reason }`; `extra` is the transition or the reason.
export function withUsage(shape, name, used, limit, remaining, period, level, percentUsed, windowStartMs, resetAtMs, extra) {
  const usage = {
    name,
    used,
    limit,
    remaining,
    period: PERIODS[period],
    level: LEVELS[level],
    percentUsed,
    windowStartMs,
    resetAtMs,
  };
  switch (shape) {
    case 0:
      return usage;
    case 1:
      return { usage, transition: extra };
    case 2:
      return { allowed: true, usage, transition: extra };
    default:
      return { allowed: false, usage, reason: extra };
  }
}

export function transition(service, from, to, used, limit, window, atMs) {
  return { service, from: LEVELS[from], to: LEVELS[to], used, limit, window, atMs };
}

export function reconfigured(added, removed, changed) {
  return { added, removed, changed };
}

export function settlement(estimate, actual, givenBack, added, used) {
  return { estimate, actual, givenBack, added, used };
}

export function many(recorded) {
  return { allowed: true, recorded };
}

export function snapshot(services, totalUsed, atMs) {
  return { services, totalUsed, atMs };
}

// StoreStats' fields, in the order shapes.rs passes them.
const STATS = [
  "loads",
  "loadFailures",
  "saves",
  "saveFailures",
  "forcedSaves",
  "coalescedSaves",
  "lastError",
  "consecutiveFailures",
  "consecutiveSuccesses",
  "reducedRate",
];

export function stats(...values) {
  return Object.fromEntries(STATS.map((field, index) => [field, values[index]]));
}

// A transition callback threw: said on the console, and otherwise ignored.
export function reportThrow(id, transition, error) {
  const { service, from, to } = transition;
  console.error(`quota: transition callback ${id} threw on ${service} ${from} -> ${to}; ignored:`, error);
}
