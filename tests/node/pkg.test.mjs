// The built package (`cargo xtask pkg`), used the way a Node user would: `node --test`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, existsSync, mkdirSync, symlinkSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import init, { QuotaTracker } from "../../pkg/quota_core.js";

const pkg = fileURLToPath(new URL("../../pkg/", import.meta.url));
// `--target web` fetches the .wasm next to the module by default; Node's fetch cannot read
// files, so Node users pass the bytes.
await init({ module_or_path: readFileSync(join(pkg, "quota_core_bg.wasm")) });

/** Runs `body` with `Date.now()` (the tracker's clock) fixed at `ms`. */
async function atFixedTime(ms, body) {
  const realNow = Date.now;
  Date.now = () => ms;
  try {
    return await body();
  } finally {
    Date.now = realNow;
  }
}

const NOW = Date.UTC(2024, 1, 29, 13, 45, 17, 250); // 2024-02-29T13:45:17.250Z

test("100,000 recordCall calls spread over interleaved async tasks are all counted", () =>
  atFixedTime(NOW, async () => {
    const tracker = new QuotaTracker({
      services: [
        { name: "api", limit: 1_000_000, period: "day" },
        { name: "mail", limit: 50_000, period: "month" },
      ],
    });
    const transitions = [];
    tracker.onTransition((t) => transitions.push(`${t.service}: ${t.from} -> ${t.to}`));

    const TASKS = 100;
    const CALLS = 1_000;
    const firstYields = [];
    async function task(id) {
      for (let i = 0; i < CALLS; i++) {
        tracker.recordCall(i % 2 === 0 ? "mail" : "api");
        if (i % 100 === 99) {
          if (i === 99) firstYields.push(id);
          await new Promise((resolve) => setImmediate(resolve)); // a new macrotask
        } else if (i % 10 === 9) {
          await null; // a microtask
        }
      }
    }
    await Promise.all(Array.from({ length: TASKS }, (_, id) => task(id)));

    // Every task ran its first 100 calls before any task ran its second 100: interleaved.
    assert.deepEqual(firstYields, Array.from({ length: TASKS }, (_, id) => id));
    const snapshot = tracker.snapshot();
    assert.equal(snapshot.totalUsed, TASKS * CALLS);
    assert.equal(tracker.usage("api").used, (TASKS * CALLS) / 2);
    assert.equal(tracker.usage("mail").used, (TASKS * CALLS) / 2);
    assert.equal(tracker.usage("mail").level, "exhausted");
    assert.deepEqual(transitions, [
      "mail: normal -> warning",
      "mail: warning -> critical",
      "mail: critical -> exhausted",
    ]);
  }));

test("results have the documented shapes", () =>
  atFixedTime(NOW, () => {
    const tracker = new QuotaTracker({
      services: [{ name: "search", limit: 10, period: "minute", warnThreshold: 0.5 }],
    });
    const first = tracker.recordCall("search");
    assert.deepEqual(first, {
      usage: {
        name: "search",
        used: 1,
        limit: 10,
        remaining: 9,
        period: "minute",
        level: "normal",
        percentUsed: 10,
        windowStartMs: Date.UTC(2024, 1, 29, 13, 45),
        resetAtMs: Date.UTC(2024, 1, 29, 13, 46),
      },
      transition: null,
    });
    const { transition } = tracker.recordCall("search", 4);
    assert.deepEqual(transition, {
      service: "search",
      from: "normal",
      to: "warning",
      used: 5,
      limit: 10,
      window: "minute",
      atMs: NOW,
    });
    const allowed = tracker.tryRecord("search", 2);
    assert.deepEqual(Object.keys(allowed).sort(), ["allowed", "transition", "usage"]);
    assert.equal(allowed.allowed, true);
    assert.equal(allowed.transition, null);
    const denied = tracker.tryRecord("search", 5);
    assert.deepEqual(Object.keys(denied).sort(), ["allowed", "reason", "usage"]);
    assert.equal(denied.allowed, false);
    assert.equal(denied.reason, "limit");
    assert.equal(denied.usage.used, 7);
    assert.equal(tracker.canCall("search"), true);
    assert.equal(tracker.reserveAllocation("search"), 1);
    assert.deepEqual(tracker.snapshot(), {
      services: [tracker.usage("search")],
      totalUsed: 7,
      atMs: NOW,
    });
    const defaults = QuotaTracker.withDefaults().snapshot().services.map((u) => u.name);
    assert.deepEqual(defaults, ["tiingo", "finnhub", "sendgrid"]);
  }));

test("bad input throws an Error and changes nothing", () => {
  const tracker = new QuotaTracker({ services: [{ name: "search", limit: 10, period: "day" }] });
  tracker.recordCall("search", 3);
  const cases = [
    [() => tracker.recordCall("nope"), /unknown service "nope"/],
    [() => tracker.recordCall(42), /service must be a string/],
    [() => tracker.recordCall("search", 0), /at least 1/],
    [() => tracker.tryRecord("search", 1.5), /whole number/],
    [() => tracker.recordCall("search", null), /must be a number/],
    [() => tracker.recordCall("search", 2 ** 53), /MAX_SAFE_INTEGER/],
    [() => tracker.onTransition("not a function"), /needs a function/],
    [() => new QuotaTracker(), /withDefaults/],
    [() => new QuotaTracker({ services: [{ name: "a", limt: 5, period: "day" }] }), /unknown field "limt"/],
    [() => new QuotaTracker({ services: [{ name: "a", limit: 5, period: "fortnight" }] }), /unknown period "fortnight"/],
  ];
  for (const [call, message] of cases) {
    assert.throws(call, (error) => error instanceof Error && message.test(error.message));
  }
  assert.equal(tracker.usage("search").used, 3);
});

test("storage in Node (no localStorage) is a configuration error: the constructor throws", () =>
  atFixedTime(NOW, () => {
    const services = [{ name: "search", limit: 100, period: "day" }];
    const before = new QuotaTracker({ services });
    before.recordCall("search", 7);
    for (const storage of [{ key: "my-app" }, { key: "my-app", syncIntervalMs: 1000 }]) {
      assert.throws(
        () => new QuotaTracker({ services, storage }),
        (error) =>
          error instanceof Error &&
          /^storage: there is no localStorage in this runtime/.test(error.message) &&
          error.message.includes('"my-app"'),
      );
    }
    // Nothing panicked: the module, and a tracker made before, work on.
    assert.equal(before.recordCall("search", 3).usage.used, 10);
    assert.equal(before.stats().lastError, null);
    assert.equal(before.isReducedRate(), false);

    const plain = new QuotaTracker({ services });
    assert.equal(plain.flush(), undefined);
    assert.equal(plain.stats().lastError, null);
    assert.equal(plain.recordCall("search").usage.used, 1);

    // Bad options are reported as such, before the missing localStorage.
    for (const [storage, message] of [
      [{ key: "" }, /storage\.key must be a non-empty string/],
      [{ key: "a", syncIntervalMs: -5 }, /storage\.syncIntervalMs/],
      [{ key: "a", interval: 5 }, /unknown field "interval"/],
      ["localStorage", /"storage" must be an object/],
    ]) {
      assert.throws(
        () => new QuotaTracker({ services, storage }),
        (error) => error instanceof Error && message.test(error.message),
      );
    }
  }));

test("a clock before 1970 (or NaN) reads as 0: the tracker works, nothing traps", async () => {
  for (const reading of [-5, -1e15, Number.NaN]) {
    await atFixedTime(reading, () => {
      const tracker = new QuotaTracker({ services: [{ name: "api", limit: 10, period: "day" }] });
      const { usage } = tracker.recordCall("api");
      assert.equal(usage.used, 1, `Date.now() = ${reading}`);
      assert.equal(usage.windowStartMs, 0);
      assert.equal(tracker.service("api").record(), 8);
    });
  }
});

test("a throwing callback is reported with console.error and affects nothing else", () => {
  const tracker = new QuotaTracker({ services: [{ name: "search", limit: 10, period: "day" }] });
  const seen = [];
  tracker.onTransition(() => {
    throw new Error("callback bug");
  });
  const id = tracker.onTransition((t) => seen.push(t.to));
  const reported = [];
  const realError = console.error;
  console.error = (...args) => reported.push(args.map(String).join(" "));
  try {
    assert.equal(tracker.recordCall("search", 5).usage.used, 5);
  } finally {
    console.error = realError;
  }
  assert.deepEqual(seen, ["warning"]);
  assert.equal(reported.length, 1);
  assert.match(reported[0], /callback bug/);
  assert.equal(tracker.offTransition(id), true);
  assert.equal(tracker.offTransition(id), false);
});

test("package.json and the TypeScript declarations describe the module", () => {
  const manifest = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8"));
  const cargo = readFileSync(new URL("../../Cargo.toml", import.meta.url), "utf8");
  const version = /^\[workspace\.package\][^[]*?^version = "([^"]+)"/m.exec(cargo)[1];
  assert.equal(manifest.name, "quota-core");
  assert.equal(manifest.version, version);
  assert.equal(manifest.type, "module");
  for (const file of [manifest.main, manifest.module, manifest.types, ...manifest.files]) {
    assert.ok(existsSync(join(pkg, file)), `${file} is in pkg/`);
  }

  const types = readFileSync(join(pkg, manifest.types), "utf8");
  for (const signature of [
    "constructor(config: TrackerConfig);",
    "static withDefaults(): QuotaTracker;",
    "recordCall(service: string, count?: number): RecordResult;",
    "tryRecord(service: string, count?: number): TryRecordResult;",
    "tryRecordPriority(service: string, count?: number): TryRecordResult;",
    '| { allowed: false; usage: ServiceUsage; reason: DenyReason };',
    'export type DenyReason = "critical" | "reserve" | "limit" | "reducedRate" | "storeUnavailable";',
    "canCall(service: string): boolean;",
    "reserveAllocation(service: string): number;",
    "usage(service: string): ServiceUsage;",
    "snapshot(): Snapshot;",
    "onTransition(callback: TransitionCallback): number;",
    "offTransition(id: number): boolean;",
    "flush(): void;",
    "isReducedRate(): boolean;",
    "stats(): StoreStats;",
    "export interface StoreStats {",
    "lastError: string | null;",
    "reducedRate: boolean;",
    "storage?: StorageOptions;",
    "export interface StorageOptions {",
    "export interface ServiceUsage {",
    "export interface Transition {",
    'export type Level = "normal" | "warning" | "critical" | "exhausted";',
  ]) {
    assert.ok(types.includes(signature), `quota_core.d.ts declares ${signature}`);
  }
  const classBody = types.slice(types.indexOf("export class QuotaTracker"));
  assert.doesNotMatch(classBody.slice(0, classBody.indexOf("\n}")), /\bany\b/);
});

test("imports as the package `quota-core` through its package.json", () => {
  const dir = mkdtempSync(join(tmpdir(), "quota-consumer-"));
  try {
    mkdirSync(join(dir, "node_modules"));
    symlinkSync(pkg, join(dir, "node_modules", "quota-core"), "dir");
    writeFileSync(
      join(dir, "consumer.mjs"),
      `import { readFileSync } from "node:fs";
       import init, { QuotaTracker } from "quota-core";
       await init({ module_or_path: readFileSync(new URL(import.meta.resolve("quota-core/quota_core_bg.wasm"))) });
       const tracker = QuotaTracker.withDefaults();
       console.log(JSON.stringify(tracker.recordCall("finnhub", 30).transition));`,
    );
    const out = execFileSync(process.execPath, ["consumer.mjs"], { cwd: dir, encoding: "utf8" });
    const transition = JSON.parse(out);
    assert.equal(transition.service, "finnhub");
    assert.deepEqual([transition.from, transition.to], ["normal", "warning"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("shadow mode (enforce: false) admits, counts and says what it would have refused", () =>
  atFixedTime(NOW, () => {
    const tracker = new QuotaTracker({
      services: [
        { name: "beta", limit: 10, period: "day", enforce: false },
        { name: "prod", limit: 10, period: "day" },
      ],
    });
    const results = Array.from({ length: 12 }, () => tracker.tryRecord("beta"));
    assert.ok(results.every((r) => r.allowed));
    assert.deepEqual(
      results.map((r) => r.shadowDenied),
      [...Array(8).fill(undefined), "critical", "critical", "limit", "limit"],
    );
    assert.equal("shadowDenied" in results[0], false, "no key where nothing would be refused");
    assert.equal(tracker.usage("beta").used, 12);
    assert.equal(tracker.usage("beta").level, "exhausted");
    assert.equal(tracker.canCall("beta"), true);
    assert.equal(tracker.tryRecordPriority("beta", 2).shadowDenied, "limit");
    // The enforcing service beside it still refuses.
    for (let i = 0; i < 12; i++) tracker.tryRecord("prod");
    assert.deepEqual(
      { used: tracker.usage("prod").used, last: tracker.tryRecord("prod").reason },
      { used: 8, last: "critical" },
    );
    assert.throws(
      () => new QuotaTracker({ services: [{ name: "a", limit: 5, period: "day", enforce: "no" }] }),
      (error) =>
        error instanceof Error &&
        error.message.includes("enforce: invalid type: string \"no\", expected a boolean"),
    );
  }));

test("reconfigure changes services at run time without losing a count", () =>
  atFixedTime(NOW, () => {
    const tracker = new QuotaTracker({
      services: [
        { name: "search", limit: 100, period: "day" },
        { name: "mail", limit: 10, period: "day" },
      ],
    });
    const seen = [];
    tracker.onTransition((t) => seen.push(`${t.service}:${t.from}->${t.to}`));
    tracker.recordCall("search", 60);
    const mail = tracker.service("mail");
    mail.record(3);
    seen.length = 0;

    const done = tracker.reconfigure({
      services: [
        { name: "llm", limit: 5, period: "minute" },
        { name: "search", limit: 70, period: "day" },
      ],
    });
    assert.deepEqual(done, { added: ["llm"], removed: ["mail"], changed: ["search"] });
    // 60 of 70: critical at once, one transition, delivered to the callback.
    assert.deepEqual(seen, ["search:warning->critical"]);
    assert.equal(tracker.usage("search").used, 60);
    assert.equal(tracker.usage("search").limit, 70);
    assert.deepEqual(
      tracker.snapshot().services.map((s) => s.name),
      ["llm", "search"],
    );
    assert.equal(tracker.recordCall("llm", 2).usage.remaining, 3);
    assert.throws(() => tracker.usage("mail"), /unknown service "mail"/);
    assert.throws(() => mail.record(), /unknown service "mail"/);

    // A name added again is a new service: the old handle stays unknown.
    tracker.reconfigure({
      services: [
        { name: "search", limit: 70, period: "day" },
        { name: "mail", limit: 10, period: "day" },
      ],
    });
    assert.throws(() => mail.record(), /unknown service "mail"/);
    // Without storage nothing holds the old one's count: it starts at 0.
    assert.equal(tracker.service("mail").record(), 9);

    // Bad input changes nothing.
    assert.throws(
      () => tracker.reconfigure({ services: [{ name: "search", limit: 0, period: "day" }] }),
      /limit must be a positive integer/,
    );
    assert.throws(
      () => tracker.reconfigure({ services: [{ name: "x", limit: 1, period: "day" }], storage: { key: "k" } }),
      /storage cannot change/,
    );
    assert.equal(tracker.usage("search").limit, 70);
  }));

test("window specs: a day in a time zone (23 hours across DST), N minutes, an anchored month", () =>
  atFixedTime(Date.UTC(2024, 2, 10, 9, 0, 0), () => {
    const tracker = new QuotaTracker({
      services: [
        { name: "maps", limit: 10, period: "day", timezone: "America/Los_Angeles" },
        { name: "search", limit: 10, period: "minute", every: 5 },
        { name: "llm", limit: 10, period: "month", anchorDay: 31 },
        { name: "burst", limit: 2, period: "second" },
      ],
    });
    const maps = tracker.usage("maps");
    assert.equal(maps.period, "day");
    assert.equal(maps.windowStartMs, Date.UTC(2024, 2, 10, 8)); // midnight PST
    assert.equal(maps.resetAtMs - maps.windowStartMs, 23 * 3_600_000); // to midnight PDT
    const search = tracker.usage("search");
    assert.deepEqual([search.windowStartMs, search.resetAtMs], [Date.UTC(2024, 2, 10, 9, 0), Date.UTC(2024, 2, 10, 9, 5)]);
    const llm = tracker.usage("llm");
    assert.deepEqual([llm.windowStartMs, llm.resetAtMs], [Date.UTC(2024, 1, 29), Date.UTC(2024, 2, 31)]);
    assert.equal(tracker.usage("burst").period, "second");

    const bad = [
      [{ timezone: "Mars/Olympus" }, /timezone must be an IANA time zone name.*\(got "Mars\/Olympus"\)/],
      [{ every: 0 }, /every must be from 1 to 36525 for days \(got 0\)/],
      [{ every: 1.5 }, /every must be a whole number \(got 1.5\)/],
      [{ anchorDay: 15 }, /anchorDay needs period "month" \(got 15\)/],
      [{ timezone: 7 }, /timezone: invalid type: number `7.0`, expected a string/],
    ];
    for (const [extra, message] of bad) {
      assert.throws(
        () => new QuotaTracker({ services: [{ name: "x", limit: 1, period: "day", ...extra }] }),
        (error) => error instanceof Error && message.test(error.message),
        JSON.stringify(extra),
      );
    }
  }));

test("several limits: all or nothing across them, each limit's usage, transitions name their window", () => {
  let now = Date.UTC(2024, 5, 10, 9, 0);
  const realNow = Date.now;
  Date.now = () => now;
  try {
    const tracker = new QuotaTracker({
      services: [
        {
          name: "tiingo",
          warnThreshold: 0.6,
          limits: [
            { limit: 50, period: "hour" },
            { limit: 1000, period: "day", timezone: "America/New_York", warnThreshold: 0.04 },
          ],
        },
      ],
    });
    const seen = [];
    tracker.onTransition((t) => seen.push(`${t.window} ${t.from}->${t.to}`));
    const recorded = tracker.recordCall("tiingo", 40);
    // The day's own warn threshold (40 of 1000); the hour's Critical (80% of 50).
    assert.deepEqual(seen.sort(), ["day@America/New_York normal->warning", "hour normal->critical"]);
    assert.equal(recorded.transition.window, "hour");
    assert.equal(recorded.usage.limit, 50, "the binding limit: 10 left, against 960");
    assert.equal(recorded.usage.level, "critical");
    const denied = tracker.tryRecord("tiingo", 1);
    assert.equal(denied.allowed, false);
    assert.equal(denied.reason, "critical");
    assert.deepEqual(
      tracker.usageLimits("tiingo").map((u) => [u.used, u.limit, u.period, u.level]),
      [
        [40, 50, "hour", "critical"],
        [40, 1000, "day", "warning"],
      ],
    );
    now += 3_600_000; // the next hour: the day goes on
    assert.equal(tracker.tryRecord("tiingo", 30).allowed, true);
    assert.deepEqual(tracker.usageLimits("tiingo").map((u) => u.used), [30, 70]);
    assert.throws(() => tracker.usageLimits("nope"), /unknown service "nope"/);
  } finally {
    Date.now = realNow;
  }
});

test("several limits: bad configs throw Errors that name the service, the entry and the field", () => {
  const bad = (service) => () => new QuotaTracker({ services: [service] });
  assert.throws(
    bad({ name: "x", limits: [{ limit: 5, period: "hour" }, { limit: 9, period: "hour" }] }),
    /invalid config: service "x": limits entry 2 has the window of entry 1: each limit of a service needs its own window \(got "hour"\)/,
  );
  assert.throws(
    bad({ name: "x", limit: 5, limits: [{ limit: 5, period: "hour" }] }),
    /services\[0\] \("x"\): limit goes inside `limits` when that is given/,
  );
  assert.throws(bad({ name: "x", limits: 5 }), /limits: invalid type: number `5.0`, expected an array/);
  assert.throws(bad({ name: "x", limits: {} }), /limits must be an array of \{ limit, period \} \(got an object\)/);
  assert.throws(bad({ name: "x", limits: [] }), /service "x": limits must list at least one limit/);
  assert.throws(
    bad({ name: "x", limits: [{ limit: 5, period: "hour", limt: 3 }] }),
    /limits\[0\]: unknown field "limt"; expected limit, period/,
  );
  assert.throws(bad({ name: "x", limits: [{ period: "hour" }] }), /limits\[0\]: missing field `limit`/);
  assert.throws(
    bad({ name: "x", limits: [{ limit: 5, period: "day", timezone: "Mars/Base" }] }),
    /timezone must be an IANA time zone name/,
  );
  assert.throws(bad({ name: "x", period: "day" }), /services\[0\]: missing field `limit`/);
  // An entry after the first is named, and its fields as JavaScript writes them.
  const second = (entry) => bad({ name: "x", limits: [{ limit: 5, period: "hour" }, { limit: 9, ...entry }] });
  assert.throws(
    second({ period: "day", warnThreshold: 2 }),
    /^Error: invalid config: service "x": limits entry 2: warnThreshold must be in \(0, 1\] \(got 2\)$/,
  );
  assert.throws(
    second({ period: "day", criticalThreshold: 0.1, warnThreshold: 0.5 }),
    /^Error: invalid config: service "x": limits entry 2: warnThreshold must not exceed the critical threshold \(0\.1\) \(got 0\.5\)$/,
  );
  assert.throws(
    second({ period: "month", anchorDay: 40 }),
    /^Error: invalid config: service "x": limits entry 2: anchorDay must be a day of the month, 1 to 31 \(got 40\)$/,
  );
  assert.throws(
    second({ period: "day", timezone: "Mars/Base" }),
    /^Error: invalid config: service "x": limits entry 2: timezone must be an IANA time zone name/,
  );
  // The first entry is the service's own limit: its fields are named alone.
  assert.throws(
    bad({ name: "x", limits: [{ limit: 9, period: "month", anchorDay: 40 }] }),
    /^Error: invalid config: service "x": anchorDay must be a day of the month, 1 to 31 \(got 40\)$/,
  );
  // The first problem in reading order: an entry's period before its `every`, and before the
  // next entry's shape; an entry's shape before a later service's.
  assert.throws(
    bad({ name: "x", limits: [{ limit: 5, period: "fortnight", every: 1.5 }, 7] }),
    /services\[0\] \("x"\): limits\[0\]: unknown period "fortnight"/,
  );
  assert.throws(
    bad({ name: "x", limits: [{ limit: 5, period: "hour", every: 1.5 }, 7] }),
    /limits\[0\]: every must be a whole number \(got 1.5\)/,
  );
  assert.throws(
    bad({ name: "x", limits: [{ limit: 5, period: "hour" }, 7] }),
    /limits\[1\] must be an object like \{ limit, period \} \(got 7\)/,
  );
  assert.throws(
    () => new QuotaTracker({ services: [{ name: "x", limits: [{ limit: 0, period: "hour" }] }, 5] }),
    /limits\[0\]: limit must be a positive integer \(got 0\)/,
  );
  assert.throws(
    bad({ name: "x", limits: [{ limit: 5, period: "day", anchorDay: -1 }] }),
    /limits\[0\]: anchorDay must be a whole number \(got -1\)/,
  );
});

test("config problems come in reading order: every service, then storage", () => {
  const service = (limit) => [{ name: "a", limit, period: "day" }];
  assert.throws(
    () => new QuotaTracker({ services: service(0), storage: 5 }),
    /^Error: invalid config: services\[0\] \("a"\): limit must be a positive integer \(got 0\)$/,
  );
  assert.throws(
    () => new QuotaTracker({ services: service(1), storage: 5 }),
    /^Error: invalid config: "storage" must be an object like \{ key: "my-app" \} \(got 5\)$/,
  );
  const throwing = {
    services: service(1),
    get storage() {
      throw new Error("boom");
    },
  };
  assert.throws(() => new QuotaTracker(throwing), /^Error: invalid config: reading field "storage" threw$/);
  assert.throws(
    () => new QuotaTracker({ services: service(1), storage: { key: "k", syncIntervalMs: 1.5 } }),
    /storage\.syncIntervalMs must be a whole number of milliseconds from 0 to Number\.MAX_SAFE_INTEGER \(got 1\.5\)/,
  );
  assert.throws(
    () => new QuotaTracker({ services: service(1), storage: { key: "k", required: null } }),
    /storage\.required must be true or false \(got null\)/,
  );
});

test("hostile configs: sparse arrays, proxies and lone surrogates throw Errors in reading order", () => {
  const service = { name: "a", limit: 0, period: "day" };
  // A sparse array's length is no count of services: an Error, no trap, no memory taken.
  const before = new QuotaTracker({ services: [{ name: "m", limit: 1, period: "day" }] });
  assert.throws(
    () => new QuotaTracker({ services: new Array(30_000_000) }),
    /^Error: invalid config: services\[0\] must be an object like \{ name, limit, period \} \(got undefined\)$/,
  );
  assert.throws(
    () => before.reconfigure({ services: [{ name: "a", limits: new Array(2 ** 32 - 1) }] }),
    /limits\[0\] must be an object like \{ limit, period \} \(got undefined\)/,
  );
  // What a proxy throws comes after the problems a reader meets before it.
  const { proxy: storage, revoke } = Proxy.revocable({}, {});
  revoke();
  assert.throws(() => new QuotaTracker({ services: [service], storage }), /limit must be a positive integer \(got 0\)/);
  const trap = new Proxy({}, { ownKeys() { throw new RangeError("trap"); } });
  assert.throws(
    () => new QuotaTracker({ services: [{ name: "a", limits: [{ limit: 1, period: "fortnight" }, trap] }] }),
    /limits\[0\]: unknown period "fortnight"/,
  );
  assert.throws(
    () => new QuotaTracker({ services: [{ name: "a", limits: [{ limit: 1, period: "day" }, trap] }] }),
    (error) => error instanceof RangeError && error.message === "trap",
  );
  // A name with a lone surrogate is quoted as the core quotes it (U+FFFD): one name, one spelling.
  assert.throws(
    () => new QuotaTracker({ services: [{ name: "\udfff", limits: [7] }] }),
    /services\[0\] \("\ufffd"\): limits\[0\] must be an object/,
  );
});
