// The lean handle `tracker.service(name)` of the built package (`cargo xtask pkg`), used the
// way a Node user would: `node --test`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import init, { QuotaTracker } from "../../pkg/quota_core.js";

const pkg = fileURLToPath(new URL("../../pkg/", import.meta.url));
await init({ module_or_path: readFileSync(join(pkg, "quota_core_bg.wasm")) });

const NOW = Date.UTC(2024, 1, 29, 13, 45, 17, 250); // 2024-02-29T13:45:17.250Z

/** Runs `body` with `Date.now()` (the tracker's clock) reading `clock.now`. */
function withClock(start, body) {
  const realNow = Date.now;
  const clock = { now: start };
  Date.now = () => clock.now;
  try {
    return body(clock);
  } finally {
    Date.now = realNow;
  }
}

/** Whether `call` throws an Error whose message matches every pattern in `messages`. */
function assertThrowsError(call, ...messages) {
  assert.throws(call, (error) => {
    assert.ok(error instanceof Error, `threw ${error}, not an Error`);
    for (const message of messages) assert.match(error.message, message);
    return true;
  });
}

function tracker() {
  return new QuotaTracker({
    services: [
      { name: "search", limit: 10, period: "minute" },
      { name: "mail", limit: 100, period: "day" },
    ],
  });
}

test("record and tryRecord return the remaining count; tryRecord returns -1 when denied", () =>
  withClock(NOW, () => {
    const search = tracker().service("search");
    assert.equal(search.name, "search");
    assert.equal(search.record(), 9);
    assert.equal(search.record(3), 6);
    assert.equal(search.tryRecord(), 5);
    assert.equal(search.tryRecord(6), -1, "11 would pass the limit (10): denied");
    assert.equal(search.usage().used, 5, "a denied call records nothing");
    assert.equal(search.tryRecord(2), 3);
    assert.equal(search.canCall(), true);
    assert.equal(search.tryRecord(1), 2); // used 8: critical
    assert.equal(search.canCall(), false);
    assert.equal(search.tryRecord(), -1, "critical: denied");
    // record always records, past the limit too; remaining stays at 0.
    assert.equal(search.record(5), 0);
    assert.equal(search.usage().used, 13);
    for (const value of [search.record(), search.tryRecord()]) {
      assert.equal(typeof value, "number");
    }
  }));

test("counts, levels and callbacks are the tracker's", () =>
  withClock(NOW, (clock) => {
    const shared = tracker();
    const seen = [];
    shared.onTransition((t) => seen.push(`${t.service}: ${t.from} -> ${t.to} at ${t.used}`));
    const mail = shared.service("mail");
    const again = shared.service("mail");
    assert.equal(mail.record(49), 51);
    assert.deepEqual(seen, []);
    assert.equal(again.record(), 50);
    assert.deepEqual(seen, ["mail: normal -> warning at 50"]);
    assert.equal(shared.recordCall("mail", 10).usage.remaining, 40);
    assert.equal(mail.tryRecord(20), 20);
    assert.deepEqual(seen, ["mail: normal -> warning at 50", "mail: warning -> critical at 80"]);
    assert.equal(shared.usage("mail").used, 80);
    assert.deepEqual(mail.usage(), shared.usage("mail"));
    assert.equal(mail.canCall(), shared.canCall("mail"));
    assert.equal(shared.snapshot().totalUsed, 80);
    assert.equal(shared.usage("search").used, 0, "other services untouched");

    // The clock is Date.now(), read at each call: the next day is a fresh window.
    clock.now = NOW + 86_400_000;
    assert.equal(mail.record(), 99);
    assert.deepEqual(seen.at(-1), "mail: critical -> normal at 0");
  }));

test("a callback may use the handle, and the handle outlives the tracker object", () =>
  withClock(NOW, () => {
    let shared = tracker();
    const search = shared.service("search");
    const inside = [];
    shared.onTransition((t) => inside.push([t.to, search.record()]));
    assert.equal(search.record(5), 5);
    // The callback ran after the call had updated the tracker, and recorded one more.
    assert.deepEqual(inside, [["warning", 4]]);
    assert.equal(search.usage().used, 6);
    shared.free(); // the JS object goes; the handle keeps the tracker
    shared = null;
    assert.equal(search.record(), 3);
    assert.equal(search.usage().used, 7);
  }));

test("bad counts throw an Error naming the problem and record nothing", () =>
  withClock(NOW, () => {
    const shared = tracker();
    const search = shared.service("search");
    search.record(2);
    const cases = [
      [0, /count must be at least 1/, /\(got 0\)/],
      [-3, /at least 1/],
      [1.5, /whole number/, /\(got 1\.5\)/],
      [NaN, /finite/],
      [Infinity, /finite/],
      [2 ** 53, /MAX_SAFE_INTEGER/],
      [null, /must be a number/, /\(got null\)/],
      ["5", /must be a number/, /the string "5"/],
      [true, /must be a number/],
      [{}, /must be a number/, /an object/],
      [5n, /must be a number/, /a bigint/],
    ];
    for (const method of ["record", "tryRecord"]) {
      for (const [count, ...messages] of cases) {
        assertThrowsError(() => search[method](count), /invalid count for service "search"/, ...messages);
      }
    }
    assert.equal(search.usage().used, 2);
    assert.equal(shared.usage("search").used, 2);
    // The largest safe count is accepted.
    assert.equal(search.record(Number.MAX_SAFE_INTEGER), 0);
  }));

test("service() refuses what names no service; free() ends a handle", () =>
  withClock(NOW, () => {
    const shared = tracker();
    assertThrowsError(() => shared.service("nope"), /unknown service "nope"/);
    assertThrowsError(() => shared.service(42), /service must be a string/, /\(got 42\)/);
    assertThrowsError(() => shared.service(), /service must be a string/, /undefined/);
    const search = shared.service("search");
    search.record();
    search.free();
    search.free(); // twice is fine
    for (const call of [() => search.record(), () => search.tryRecord(), () => search.canCall(), () => search.usage()]) {
      assertThrowsError(call, /freed/);
    }
    // A new handle works, and the tracker kept the count.
    assert.equal(shared.service("search").record(), 8);
  }));

test("tryRecordPriority takes the reserve that tryRecord holds back, on the tracker and the handle", () =>
  withClock(NOW, () => {
    const tracker = new QuotaTracker({
      services: [{ name: "api", limit: 100, period: "day", criticalThreshold: 1, reserveFraction: 0.1 }],
    });
    const api = tracker.service("api");
    assert.equal(api.tryRecord(90), 10);
    assert.equal(api.tryRecord(), -1, "the reserve is held back");
    const held = tracker.tryRecord("api");
    assert.deepEqual({ allowed: held.allowed, reason: held.reason }, { allowed: false, reason: "reserve" });
    assert.equal(tracker.canCall("api"), false);
    assert.equal(api.tryRecordPriority(11), -1, "past the limit");
    assert.equal(tracker.tryRecordPriority("api", 11).reason, "limit");
    assert.equal(api.tryRecordPriority(9), 1);
    const last = tracker.tryRecordPriority("api");
    assert.equal(last.allowed, true);
    assert.equal(last.usage.used, 100);
    assert.equal(api.tryRecordPriority(), -1);
    assertThrowsError(() => api.tryRecordPriority(0), /at least 1/);
    assertThrowsError(() => tracker.tryRecordPriority("nope"), /unknown service/);
    assert.equal(api.usage().used, 100);
  }));

test("the TypeScript declarations describe the handle", () => {
  const types = readFileSync(join(pkg, "quota_core.d.ts"), "utf8");
  for (const signature of [
    "service(service: string): Service;",
    "export interface Service {",
    "readonly name: string;",
    "record(count?: number): number;",
    "tryRecord(count?: number): number;",
    "tryRecordPriority(count?: number): number;",
    "canCall(): boolean;",
    "usage(): ServiceUsage;",
    "free(): void;",
  ]) {
    assert.ok(types.includes(signature), `quota_core.d.ts declares ${signature}`);
  }
});

test("recordCall and tryRecord count right for any service position, count and clock", () => {
  // One answer out of wasm packs the service's position with the count or the time; positions
  // from 64 on, huge counts and odd clocks take the long way. All must count the same.
  const services = Array.from({ length: 70 }, (_, i) => ({
    name: `s${i}`,
    limit: Number.MAX_SAFE_INTEGER,
    period: "day",
  }));
  for (const now of [NOW, 0, 1.5, 2 ** 46, 2 ** 60]) {
    withClock(now, () => {
      const tracker = new QuotaTracker({ services });
      for (const i of [0, 1, 63, 64, 69]) {
        const name = `s${i}`;
        let used = 0;
        for (const count of [undefined, 1, 2, 3, 2 ** 46 - 1, 2 ** 46, 2 ** 50]) {
          used += count ?? 1;
          assert.equal(tracker.recordCall(name, count).usage.used, used, `${name} ${count} at ${now}`);
          used += count ?? 1;
          assert.equal(tracker.tryRecord(name, count).usage.used, used, `${name} ${count} at ${now}`);
        }
        assert.equal(tracker.usage(name).used, used);
        assert.equal(tracker.canCall(name), true);
        const { windowStartMs, resetAtMs } = tracker.usage(name);
        assert.ok(windowStartMs <= now && now < resetAtMs, `${now} in its day`);
      }
      assert.equal(tracker.usage("s2").used, 0, "untouched services stay at 0");
      assertThrowsError(() => tracker.recordCall("s64", 0), /at least 1/, /"s64"/);
      assertThrowsError(() => tracker.recordCall("s3", 2 ** 53), /MAX_SAFE_INTEGER/);
      assertThrowsError(() => tracker.recordCall("nope", 3), /unknown service "nope"/);
      assertThrowsError(() => tracker.recordCall("nope", 1.5), /whole number/, /"nope"/);
    });
  }
});
