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

test("a transition callback during settle that settles, holds, records many, frees the handle and the tracker keeps counts exact", () => {
  const tracker = two();
  const service = tracker.service("a");
  const others = [tracker.hold("b", 10), tracker.hold("b", 20)];
  const made = [];
  const seen = [];
  tracker.onTransition((t) => {
    seen.push(`${t.service} ${t.from} -> ${t.to}`);
    if (t.service !== "a" || t.to !== "normal") return;
    assert.equal(others[0].settle(1).used, 21);
    made.push(tracker.hold("b", 5));
    assert.equal(tracker.tryRecordMany([["a", 1], ["b", 1]]).allowed, true);
    service.free();
    tracker.free();
  });
  const hold = tracker.hold("a", 60);
  // The settle delivers the callback, which frees the tracker object: the hold keeps it.
  assert.deepEqual(hold.settle(2), { estimate: 60, actual: 2, givenBack: 58, added: 0, used: 2 });
  assert.deepEqual(seen, ["a normal -> warning", "a warning -> normal"]);
  // The other holds settle after the tracker object was freed, each against exact counts.
  assert.equal(others[1].settle(0).used, 1 + 5 + 1);
  assert.equal(made[0].settle(5).used, 1 + 5 + 1);
  assert.throws(() => service.usage(), /freed/);
});

test("a hold and its settle across a reconfigure that gives the limit a fresh count take nothing made since", () => {
  const minute = { services: [{ name: "a", limit: 100, period: "minute", reserveFraction: 0 }] };
  const hour = { services: [{ name: "a", limit: 100, period: "hour", reserveFraction: 0 }] };
  const tracker = new QuotaTracker(minute);
  const hold = tracker.hold("a", 50);
  tracker.reconfigure(hour);
  tracker.reconfigure(minute);
  assert.equal(tracker.recordCall("a", 30).usage.used, 30);
  hold.settle(0);
  // The 30 calls made since stay counted (the minute's fresh count never held the 50).
  assert.equal(tracker.usage("a").used, 30);
  tracker.free();
});

test("holds dropped unsettled keep their estimates once collected, and their entries are reused", async () => {
  const { setFlagsFromString } = await import("node:v8");
  const { runInNewContext } = await import("node:vm");
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc");
  const tracker = new QuotaTracker({ services: [{ name: "x", limit: 1e12, period: "day" }] });
  const drop = () => {
    for (let i = 0; i < 50_000; i++) tracker.hold("x", 2);
  };
  const collect = async () => {
    for (let i = 0; i < 3; i++) {
      gc();
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  drop();
  await collect();
  const after = wasm.memory.buffer.byteLength;
  for (let round = 0; round < 3; round++) {
    drop();
    await collect();
  }
  assert.equal(tracker.usage("x").used, 4 * 50_000 * 2);
  // The collected holds' entries were freed and reused: no growth past the first round.
  assert.equal(wasm.memory.buffer.byteLength, after);
  tracker.free();
});

test("a million hold and settle cycles keep wasm memory flat and counts exact", () => {
  const tracker = new QuotaTracker({ services: [{ name: "x", limit: 1e13, period: "day" }] });
  for (let i = 0; i < 1_000; i++) tracker.hold("x", 3).settle(1);
  const before = wasm.memory.buffer.byteLength;
  for (let i = 0; i < 1_000_000; i++) {
    const hold = tracker.hold("x", 3);
    if (i % 2) hold.settle(1);
    else hold.cancel();
  }
  assert.equal(wasm.memory.buffer.byteLength, before);
  assert.equal(tracker.usage("x").used, 1_000 + 500_000);
  tracker.free();
});

test("tryRecordMany says which services shadow mode admitted that enforcing would have refused, as tryRecord does", () => {
  const tracker = new QuotaTracker({
    services: [
      { name: "shadow", limit: 10, period: "minute", enforce: false },
      { name: "enforced", limit: 10, period: "minute" },
    ],
  });
  const many = tracker.tryRecordMany([
    ["shadow", 50],
    ["enforced", 1],
  ]);
  assert.equal(many.allowed, true);
  assert.equal(many.recorded[0].usage.used, 50);
  assert.equal(many.recorded[0].shadowDenied, "limit");
  assert.equal("shadowDenied" in many.recorded[1], false);
  // What tryRecord answers for the same call.
  assert.equal(tracker.tryRecord("shadow", 50).shadowDenied, "limit");
  tracker.free();
});

test("a revoked Proxy as a service, an estimate or a count throws a clear Error and leaves the tracker freeable", () => {
  const { proxy: revoked, revoke } = Proxy.revocable([], {});
  revoke();
  const cases = [
    [(t) => t.hold(revoked, 1), /service must be a string naming a configured service \(got an object\)/],
    [(t) => t.hold("a", revoked), /invalid count for service "a": count must be a number \(got an object\)/],
    [(t) => t.tryRecordMany([[revoked, 1]]), /service must be a string/],
    [(t) => t.tryRecordMany([["a", revoked]]), /count must be a number/],
    [(t) => t.recordCall("a", revoked), /count must be a number/],
    [(t) => t.reconfigure(revoked), /invalid config/],
  ];
  for (const [call, message] of cases) {
    const tracker = two();
    assert.throws(() => call(tracker), (error) => error instanceof Error && message.test(error.message));
    assert.equal(tracker.snapshot().totalUsed, 0);
    tracker.free();
  }
});

test("a config whose reading throws (a Proxy's trap) is an invalid config, and the tracker stays freeable", () => {
  const trap = (name) => ({
    [name]() {
      throw new Error("trap");
    },
  });
  const services = [{ name: "a", limit: 100, period: "minute" }];
  const configs = [
    new Proxy({ services }, trap("ownKeys")),
    { services: new Proxy(services, trap("get")) },
    { services: [new Proxy(services[0], trap("ownKeys"))] },
  ];
  for (const config of configs) {
    const tracker = two();
    assert.throws(() => tracker.reconfigure(config), (error) => error instanceof Error && /invalid config/.test(error.message));
    assert.equal(tracker.usage("b").name, "b");
    tracker.free();
  }
});
