// The JavaScript shapes of the values `quota_core::js` hands out. Each is built by one call
// across the wasm boundary (rather than one call per property), which keeps `recordCall` cheap.
// Levels and periods arrive as indices into these tables; `shapes.rs` owns the matching order.

const LEVELS = ["normal", "warning", "critical", "exhausted"];
const PERIODS = ["minute", "hour", "day", "month"];

export function usage(name, used, limit, remaining, period, level, percentUsed, windowStartMs, resetAtMs) {
  return {
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
}

export function transition(service, from, to, used, limit, atMs) {
  return { service, from: LEVELS[from], to: LEVELS[to], used, limit, atMs };
}

export function recorded(name, used, limit, remaining, period, level, percentUsed, windowStartMs, resetAtMs, transition) {
  return {
    usage: usage(name, used, limit, remaining, period, level, percentUsed, windowStartMs, resetAtMs),
    transition,
  };
}

export function allowed(name, used, limit, remaining, period, level, percentUsed, windowStartMs, resetAtMs, transition) {
  return {
    allowed: true,
    usage: usage(name, used, limit, remaining, period, level, percentUsed, windowStartMs, resetAtMs),
    transition,
  };
}

export function denied(name, used, limit, remaining, period, level, percentUsed, windowStartMs, resetAtMs, reason) {
  return {
    allowed: false,
    usage: usage(name, used, limit, remaining, period, level, percentUsed, windowStartMs, resetAtMs),
    reason,
  };
}

export function snapshot(services, totalUsed, atMs) {
  return { services, totalUsed, atMs };
}

export function stats(
  loads,
  loadFailures,
  saves,
  saveFailures,
  forcedSaves,
  coalescedSaves,
  lastError,
  consecutiveFailures,
  consecutiveSuccesses,
  reducedRate,
) {
  return {
    loads,
    loadFailures,
    saves,
    saveFailures,
    forcedSaves,
    coalescedSaves,
    lastError,
    consecutiveFailures,
    consecutiveSuccesses,
    reducedRate,
  };
}

// A transition callback threw: said on the console, and otherwise ignored.
export function reportThrow(id, transition, error) {
  const { service, from, to } = transition;
  console.error(`quota: transition callback ${id} threw on ${service} ${from} -> ${to}; ignored:`, error);
}
