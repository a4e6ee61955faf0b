import { readFileSync } from "node:fs";
import { initSync, QuotaTracker, type ServiceUsage, type Transition } from "quota-core";

// Node, as above; in a browser: `await init()`.
initSync({ module: readFileSync(new URL(import.meta.resolve("quota-core/quota_core_bg.wasm"))) });

const tracker = new QuotaTracker({
  services: [{ name: "search", limit: 100, period: "minute" }],
});
tracker.onTransition((t: Transition) => console.log(`${t.service} is now ${t.to}`));

const result = tracker.tryRecord("search", 80); // → search is now critical
if (result.allowed) {
  const usage: ServiceUsage = result.usage;
  console.log(usage.remaining, result.transition?.to); // → 20 critical
} else {
  console.log(`denied: ${result.usage.remaining} left`); // no transition on a denial
}
