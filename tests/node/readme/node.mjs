import { readFileSync } from "node:fs";
import { initSync, QuotaTracker } from "quota-core";

// Node: compile the .wasm from the installed package, synchronously.
initSync({ module: readFileSync(new URL(import.meta.resolve("quota-core/quota_core_bg.wasm"))) });

const tracker = new QuotaTracker({
  services: [
    { name: "search", limit: 100, period: "minute" },
    { name: "email", limit: 1000, period: "day", warnThreshold: 0.6, criticalThreshold: 0.9 },
  ],
}); // or QuotaTracker.withDefaults()

tracker.onTransition((t) => console.log(`${t.service}: ${t.from} -> ${t.to}`));

const { usage, transition } = tracker.recordCall("search", 50); // → search: normal -> warning
console.log(usage.remaining, usage.level); // → 50 warning
console.log(transition.from, transition.to, transition.used); // → normal warning 50

// Check and count in one step: 60 more would pass the limit, so nothing is recorded.
console.log(tracker.tryRecord("search", 60).allowed); // → false
console.log(tracker.canCall("search")); // → true
console.log(tracker.snapshot().totalUsed); // → 50

// Hot loops: a lean handle on one service. One number back, no objects built.
const search = tracker.service("search");
console.log(search.record()); // → 49
console.log(search.tryRecord(10)); // → 39
console.log(search.tryRecord(60)); // → -1

// Normal calls stop at the Critical level (80 here) or the reserve; priority calls may use both.
console.log(tracker.tryRecord("search", 20).reason); // → critical
const urgent = tracker.tryRecordPriority("search", 20); // → search: warning -> critical
console.log(urgent.allowed, urgent.usage.used); // → true 81

// Bad input throws an Error that names the problem, and changes nothing.
try {
  tracker.recordCall("serach");
} catch (error) {
  console.log(error.message); // → unknown service "serach"
}
