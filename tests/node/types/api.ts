// Every part of the API as a TypeScript user writes it: readme.test.mjs type-checks this file
// with `tsc --strict` and `lib: ["es2022"]` alone (no DOM, no @types/node) against the
// installed package. Each `@ts-expect-error` must be an error, so the types cannot be `any`.
import init, {
  initSync,
  QuotaTracker,
  type Hold,
  type Level,
  type Period,
  type RecordResult,
  type Reconfigured,
  type Service,
  type ServiceConfig,
  type Settlement,
  type ServiceUsage,
  type Snapshot,
  type StoreStats,
  type TrackerConfig,
  type Transition,
  type TryRecordManyResult,
  type TryRecordResult,
} from "quota-core";

export async function load(bytes: Uint8Array): Promise<void> {
  initSync({ module: bytes });
  await init({ module_or_path: bytes });
  await init({ module_or_path: "https://example.invalid/quota_core_bg.wasm" });
}

export function use(): number {
  const services: ServiceConfig[] = [
    { name: "search", limit: 100, period: "minute" },
    { name: "email", limit: 1000, period: "day", warnThreshold: 0.6, criticalThreshold: 0.9 },
  ];
  const config: TrackerConfig = { services, storage: { key: "my-app", syncIntervalMs: 1000 } };
  const tracker = new QuotaTracker(config);
  const defaults: QuotaTracker = QuotaTracker.withDefaults();
  // @ts-expect-error: "fortnight" is no period
  new QuotaTracker({ services: [{ name: "a", limit: 1, period: "fortnight" }] });

  const id: number = tracker.onTransition((t: Transition) => {
    const from: Level = t.from;
    const to: Level = t.to;
    console.log(t.service, from, to, t.used, t.limit, t.atMs);
  });
  tracker.offTransition(id);

  const recorded: RecordResult = tracker.recordCall("search", 2);
  const usage: ServiceUsage = recorded.usage;
  const period: Period = usage.period;
  const numbers: number[] = [
    usage.used, usage.limit, usage.remaining, usage.percentUsed, usage.windowStartMs,
    usage.resetAtMs,
  ];
  // @ts-expect-error: the transition may be null
  recorded.transition.to;

  const windows: ServiceConfig[] = [
    { name: "maps", limit: 25_000, period: "day", timezone: "America/Los_Angeles" },
    { name: "llm", limit: 1_000_000, period: "month", anchorDay: 15, enforce: false },
    { name: "burst", limit: 10, period: "second", every: 5 },
  ];
  const done: Reconfigured = tracker.reconfigure({ services: [...services, ...windows] });
  const names: string[] = [...done.added, ...done.removed, ...done.changed];
  // @ts-expect-error: storage cannot change at run time
  tracker.reconfigure({ services, storage: { key: "other" } });
  // @ts-expect-error: a time zone is a name
  new QuotaTracker({ services: [{ name: "a", limit: 1, period: "day", timezone: 7 }] });
  const shadow: TryRecordResult = tracker.tryRecord("llm");
  if (shadow.allowed) {
    const wouldHave: string | undefined = shadow.shadowDenied;
    console.log(wouldHave, names);
  }

  const tried: TryRecordResult = tracker.tryRecord("search");
  if (tried.allowed) {
    const transition: Transition | null = tried.transition;
    console.log(transition?.to);
  } else {
    // @ts-expect-error: a denial has no transition
    tried.transition;
  }

  const allowed: boolean = tracker.canCall("search");
  const reserve: number = tracker.reserveAllocation("search");
  const snapshot: Snapshot = tracker.snapshot();
  const total: number = snapshot.totalUsed + snapshot.atMs + snapshot.services.length;
  const stats: StoreStats = tracker.stats();
  const lastError: string | null = stats.lastError;
  const reduced: boolean = tracker.isReducedRate() || stats.reducedRate;
  tracker.flush();

  const search: Service = tracker.service("search");
  const remaining: number = search.record() + search.record(3) + search.tryRecord(2);
  const name: string = search.name;
  // @ts-expect-error: the name is read-only
  search.name = "other";
  const handleAllowed: boolean = search.canCall();
  const handleUsage: ServiceUsage = search.usage();
  search.free();
  // @ts-expect-error: counts are numbers
  tracker.recordCall("search", "2");

  const hold: Hold = tracker.hold("llm", 2_000);
  const held: number = hold.estimate;
  const heldService: string = hold.service;
  const settled: Settlement = hold.settle(1_234);
  const settledNumbers: number[] = [
    settled.estimate, settled.actual, settled.givenBack, settled.added, settled.used,
  ];
  const wasSettled: boolean = hold.settled;
  // @ts-expect-error: the estimate is read-only
  hold.estimate = 1;
  // @ts-expect-error: an actual is a number
  tracker.hold("llm", 10).settle("5");
  // @ts-expect-error: a hold needs its estimate
  tracker.hold("llm");
  const cancelled: Settlement = tracker.hold("llm", 10).cancel();
  const many: TryRecordManyResult = tracker.tryRecordMany([["search", 1], ["llm", 100]]);
  const asObject: TryRecordManyResult = tracker.tryRecordMany({ search: 1, llm: 100 });
  if (many.allowed) {
    const each: RecordResult[] = many.recorded;
    console.log(each.length);
  } else {
    const refusedBy: string = many.usage.name;
    console.log(refusedBy, many.reason);
  }
  // @ts-expect-error: pairs of a service and a count
  tracker.tryRecordMany([["search", "1"]]);
  console.log(held, heldService, settledNumbers, wasSettled, cancelled.givenBack, asObject.allowed);

  tracker.free();
  defaults.free();
  console.log(period, numbers, allowed, lastError, reduced, name, handleAllowed, handleUsage);
  return reserve + total + remaining;
}
