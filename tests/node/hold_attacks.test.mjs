// A hostile user's calls to holds (`tracker.hold`) and `tracker.tryRecordMany` in the built
// package (`cargo xtask pkg`): input that throws while it is read, re-entrant callbacks,
// reconfigures between hold and settle, and many holds dropped unsettled.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

import init, { QuotaTracker } from "../../pkg/quota_core.js";

const wasm = await init({
  module_or_path: readFileSync(fileURLToPath(new URL("../../pkg/quota_core_bg.wasm", import.meta.url))),
});

function two() {
  return new QuotaTracker({
    services: [
      { name: "a", limit: 100, period: "minute", reserveFraction: 0 },
      { name: "b", limit: 100, period: "minute", reserveFraction: 0 },
    ],
  });
}

test("tryRecordMany with calls whose reading throws rethrows that, records nothing, and leaves the tracker usable and freeable", () => {
  const getter = [["a", 1]];
  Object.defineProperty(getter, 0, {
    get() {
      throw new Error("getter boom");
    },
  });
  const pairGetter = [["a", 1]];
  Object.defineProperty(pairGetter[0], 1, {
    get() {
      throw new Error("count getter boom");
    },
  });
  const { proxy: revoked, revoke } = Proxy.revocable([], {});
  revoke();
  const cases = [
    [getter, /getter boom/],
    [pairGetter, /count getter boom/],
    [revoked, TypeError],
    [[["a", 1], revoked], TypeError],
    [new Proxy({}, { ownKeys() { throw new Error("ownKeys boom"); } }), /ownKeys boom/],
    [new Proxy([["a", 1]], { get(target, key) { if (key === "length") throw new Error("length boom"); return target[key]; } }), /length boom/],
  ];
  for (const [calls, expected] of cases) {
    const tracker = two();
    assert.throws(() => tracker.tryRecordMany(calls), expected);
    assert.equal(tracker.snapshot().totalUsed, 0);
    // The tracker was not left borrowed by the exception: it still records, and frees.
    assert.equal(tracker.tryRecordMany([["a", 1], ["b", 2]]).allowed, true);
    tracker.free();
  }
});
