import { readFileSync } from "node:fs";
import { initSync, QuotaTracker } from "quota-core";

initSync({ module: readFileSync(new URL(import.meta.resolve("quota-core/quota_core_bg.wasm"))) });

const tracker = new QuotaTracker({
  services: [
    { name: "openai-requests", limit: 500, period: "minute" },
    { name: "openai-tokens", limit: 30000, period: "minute" },
  ],
});

// One request and its estimated tokens, both or neither.
const both = tracker.tryRecordMany([["openai-requests", 1], ["openai-tokens", 2000]]);
console.log(both.allowed, both.recorded[1].usage.used); // → true 2000

// Hold an estimate; settle what the response reports (usage.total_tokens).
const hold = tracker.hold("openai-tokens", 2000);
console.log(tracker.usage("openai-tokens").used); // → 4000
const settled = hold.settle(1234);
console.log(settled.givenBack, settled.used); // → 766 3234

// A request that never left costs nothing; a refused hold throws, with the reason.
tracker.hold("openai-tokens", 5000).cancel();
try {
  tracker.hold("openai-tokens", 30000);
} catch (error) {
  console.log(error.reason); // → limit
}
console.log(tracker.usage("openai-tokens").used); // → 3234
