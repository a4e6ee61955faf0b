import init, { QuotaTracker } from "quota-core";

// Browsers: fetches quota_core_bg.wasm from beside quota_core.js.
await init();

const tracker = new QuotaTracker({
  services: [{ name: "search", limit: 100, period: "minute" }],
});
const search = tracker.service("search");
if (search.tryRecord() >= 0) {
  // make the call
}
console.log(tracker.usage("search").used); // → 1
