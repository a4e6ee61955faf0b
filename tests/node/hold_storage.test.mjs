// Holds on a tracker with `storage` (localStorage): Node has none, so a minimal one stands in,
// on a global that web-sys takes for a `Window`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const stored = new Map();
globalThis.Window = function Window() {};
Object.setPrototypeOf(globalThis, Object.create(globalThis.Window.prototype));
globalThis.localStorage = {
  getItem: (key) => stored.get(key) ?? null,
  setItem: (key, value) => stored.set(key, String(value)),
  removeItem: (key) => stored.delete(key),
};

const { default: init, QuotaTracker } = await import("../../pkg/quota_core.js");
await init({
  module_or_path: readFileSync(fileURLToPath(new URL("../../pkg/quota_core_bg.wasm", import.meta.url))),
});

test("a settle after its estimate was saved reports what the count really is, and the next sync keeps it", () => {
  const realNow = Date.now;
  Date.now = () => Date.UTC(2026, 0, 1, 0, 0, 30);
  try {
    const tracker = new QuotaTracker({
      services: [{ name: "a", limit: 1_000, period: "minute", reserveFraction: 0 }],
      storage: { key: "hold-after-save", syncIntervalMs: 0 },
    });
    const hold = tracker.hold("a", 100);
    tracker.flush(); // the estimate is saved
    const settled = hold.settle(10);
    tracker.flush();
    // Whatever the settle gave back (or kept), it said so: the count stays what it answered.
    assert.equal(tracker.usage("a").used, settled.used);
    assert.equal(settled.used, settled.estimate - settled.givenBack);

    // A hold whose estimate was not saved yet gives it all back.
    const unsaved = new QuotaTracker({
      services: [{ name: "b", limit: 1_000, period: "minute", reserveFraction: 0 }],
      storage: { key: "hold-before-save", syncIntervalMs: 3_600_000 },
    });
    const early = unsaved.hold("b", 100);
    assert.deepEqual(early.settle(10), { estimate: 100, actual: 10, givenBack: 90, added: 0, used: 10 });
    unsaved.flush();
    assert.equal(unsaved.usage("b").used, 10);
    unsaved.free();
    tracker.free();
  } finally {
    Date.now = realNow;
  }
});
