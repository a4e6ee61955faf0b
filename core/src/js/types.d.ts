/** A window length; windows align to calendar boundaries (UTC unless a `timezone` is set). */
export type Period = "second" | "minute" | "hour" | "day" | "week" | "month";

/** How close a service is to its limit. */
export type Level = "normal" | "warning" | "critical" | "exhausted";

/** One rate-limited service. Thresholds are fractions of the limit. */
export interface ServiceConfig {
  /** Unique, non-empty name that calls are recorded under. */
  name: string;
  /** Calls allowed per window: a positive integer (or the first entry of `limits`). */
  limit?: number;
  /** The window's unit (or the first entry of `limits`). */
  period?: Period;
  /** Warning from this fraction of the limit, in (0, 1]; default 0.5. */
  warnThreshold?: number;
  /** Critical from this fraction of the limit, in (0, 1]; default 0.8. */
  criticalThreshold?: number;
  /** Fraction of the limit held back for `tryRecordPriority`, in [0, 1); default 0.1. */
  reserveFraction?: number;
  /** N periods per window (5 with "minute": 5-minute windows from :00); default 1. */
  every?: number;
  /** An IANA time zone (e.g. "America/Los_Angeles"): windows from local midnight; default UTC. */
  timezone?: string;
  /** With "month": months start on this day (1 to 31; in a shorter month, its last day). */
  anchorDay?: number;
  /**
   * Whether admission refuses; default true. `false` is shadow mode: every call is counted and
   * admitted, and a call that would have been refused says why in `shadowDenied`.
   */
  enforce?: boolean;
  /**
   * Several limits, each in its own window, instead of `limit` and `period` (Tiingo: `[{ limit:
   * 50, period: "hour" }, { limit: 1000, period: "day" }]`): a call is admitted only if every
   * limit admits it, and counted in every limit's window. The first entry is the service's own
   * limit; the service's thresholds and `enforce` apply to every entry that sets none.
   */
  limits?: LimitConfig[];
}

/** One entry of `ServiceConfig.limits`: a limit in a window of its own. */
export interface LimitConfig {
  limit: number;
  period: Period;
  every?: number;
  timezone?: string;
  anchorDay?: number;
  warnThreshold?: number;
  criticalThreshold?: number;
  enforce?: boolean;
}

/**
 * Where a tracker persists its counts: `localStorage[key]`. A new tracker on the same key
 * continues from the last save. Saves are made by the calls themselves (no timer): once
 * `syncIntervalMs` has passed since the last save, at once when a service enters critical, and
 * on `flush()`. Where there is no `localStorage` (Node) the constructor throws an Error.
 */
export interface StorageOptions {
  /** The localStorage key: a non-empty string. */
  key: string;
  /** Save when this many ms have passed since the last save: a whole number >= 0; default 60000. */
  syncIntervalMs?: number;
  /**
   * `true`: the constructor throws an Error with the store's message when the first read of
   * `localStorage[key]` fails (corrupt data, a `getItem` that throws). Default `false`: the
   * tracker starts from zero and `stats().lastError` says why.
   */
  required?: boolean;
}

/** The services a tracker counts, in display order, and optionally where to persist them. */
export interface TrackerConfig {
  services: ServiceConfig[];
  storage?: StorageOptions;
}

/** What `reconfigure` takes: the services (storage is fixed when the tracker is built). */
export interface ServicesConfig {
  services: ServiceConfig[];
}

/** What `reconfigure` did, by service name. */
export interface Reconfigured {
  added: string[];
  removed: string[];
  changed: string[];
}

/** Counters of a tracker's store activity (all zero, `lastError` null, without `storage`). */
export interface StoreStats {
  /** Loads attempted: one at construction, and retries before a save while loading fails. */
  loads: number;
  /** Loads that failed or found corrupt data (the tracker then started fresh). */
  loadFailures: number;
  /** Successful saves. */
  saves: number;
  /** Failed saves (a failed flush counts too). */
  saveFailures: number;
  /** Saves made at once because a service entered critical. */
  forcedSaves: number;
  /** Save triggers that found a save already running and folded into it. */
  coalescedSaves: number;
  /** The most recent load or save error, or null if there was none. */
  lastError: string | null;
  /** Failed saves since the last success. */
  consecutiveFailures: number;
  /** Successful saves since the last failure. */
  consecutiveSuccesses: number;
  /** Whether reduced-rate mode is on (see `isReducedRate`). */
  reducedRate: boolean;
}

/**
 * One service's usage in its current window. Times are ms since the Unix epoch. For a service
 * of several limits, `usage` describes the binding limit (the least headroom) and `level` is
 * the highest of its limits'; `usageLimits` gives each limit's.
 */
export interface ServiceUsage {
  name: string;
  used: number;
  limit: number;
  remaining: number;
  period: Period;
  level: Level;
  percentUsed: number;
  windowStartMs: number;
  resetAtMs: number;
}

/** A change of one service's level. */
export interface Transition {
  service: string;
  from: Level;
  to: Level;
  used: number;
  limit: number;
  /**
   * The window of the limit whose level changed, as stores key it: `"day"`, `"5minute"`,
   * `"day@America/Los_Angeles"`, `"month+15"` (a service of several limits has one per limit).
   */
  window: string;
  atMs: number;
}

/** What `recordCall` returns; `transition` is the level change this call made, if any. */
export interface RecordResult {
  usage: ServiceUsage;
  transition: Transition | null;
}

/**
 * Which admission rule refused a call: `"critical"` (normal calls stop at the Critical level),
 * `"reserve"` (normal calls leave the reserve to priority calls), `"limit"` (past the limit,
 * priority calls too), `"reducedRate"` (the store failed too often: the reduced allowance caps
 * priority calls too), `"storeUnavailable"` (shared admission could not reach the store).
 */
export type DenyReason = "critical" | "reserve" | "limit" | "reducedRate" | "storeUnavailable";

/** What `tryRecord` and `tryRecordPriority` return: recorded, or refused with nothing recorded. */
export type TryRecordResult =
  | {
      allowed: true;
      usage: ServiceUsage;
      transition: Transition | null;
      /** Shadow mode (`enforce: false`) only: the rule that would have refused this call. */
      shadowDenied?: DenyReason;
    }
  | { allowed: false; usage: ServiceUsage; reason: DenyReason };

/**
 * What `tryRecordMany` returns: every service's calls recorded (`recorded`, in the order
 * asked), or none, with the first refusing service's usage (`usage.name` names it) and why.
 */
export type TryRecordManyResult =
  | {
      allowed: true;
      /** Shadow mode (`enforce: false`): `shadowDenied` names the rule that would have refused. */
      recorded: (RecordResult & { shadowDenied?: DenyReason })[];
    }
  | { allowed: false; usage: ServiceUsage; reason: DenyReason };

/**
 * Calls admitted at an estimate, from `tracker.hold(service, estimate)`: `settle(actual)` them
 * once the response says what they cost, or `cancel()` them if the call was never made; one of
 * the two, once (a second call throws). A hold never settled (freed, or garbage-collected)
 * keeps its estimate counted, as a call that may have been made must.
 */
export interface Hold {
  /** The service held. */
  readonly service: string;
  /** The calls admitted. */
  readonly estimate: number;
  /** Whether `settle` or `cancel` has been called. */
  readonly settled: boolean;
  /**
   * Settles the hold at `actual` calls (a whole number from 0 to `Number.MAX_SAFE_INTEGER`):
   * below the estimate the difference is given back (the level may go down: a transition,
   * delivered to the callbacks), above it the excess is added, even past the limit. Throws if
   * `actual` is not such a number (the hold stays unsettled), if the hold was settled,
   * cancelled or freed, or if a `reconfigure` removed the service (the estimate stays counted).
   */
  settle(actual: number): Settlement;
  /** Gives the whole estimate back: the call was never made (`settle(0)`). Throws as `settle`. */
  cancel(): Settlement;
  /** Lets go of an unsettled hold now, keeping its estimate counted; settling it then throws. */
  free(): void;
}

/** What `hold.settle(actual)` and `hold.cancel()` did. */
export interface Settlement {
  /** The calls the hold was admitted for. */
  estimate: number;
  /** The calls settled (0 for `cancel`). */
  actual: number;
  /**
   * Calls taken off the windows the hold was counted in: `estimate - actual`, or 0 when
   * nothing was given back (`actual` above the estimate, or a raise of the window since).
   */
  givenBack: number;
  /** Calls added past the estimate (`actual - estimate`, or 0), even past the limit. */
  added: number;
  /** The service's count after, as `usage(name).used` reports it. */
  used: number;
}

/** Every service's usage at one instant. */
export interface Snapshot {
  services: ServiceUsage[];
  totalUsed: number;
  atMs: number;
}

/** Called once per level change. */
export type TransitionCallback = (transition: Transition) => void;

/**
 * A lean handle on one service, from `tracker.service(name)`, for hot loops: `record` and
 * `tryRecord` return only the remaining count and build no objects. The counts, levels,
 * callbacks and storage are the tracker's: a call here is a call there.
 */
export interface Service {
  /** The service's name. */
  readonly name: string;
  /**
   * Records `count` calls (default 1) and returns the remaining count, `max(limit - used, 0)`.
   * It always records, as `recordCall` does. Throws an Error if `count` is not a whole number
   * from 1 to `Number.MAX_SAFE_INTEGER`.
   */
  record(count?: number): number;
  /**
   * Records `count` calls (default 1) only if they are allowed, as `tryRecord` decides, and
   * returns the remaining count after; `-1` when denied (nothing recorded). Throws as `record`.
   */
  tryRecord(count?: number): number;
  /**
   * As `tryRecord`, under priority admission (`tryRecordPriority`): may use the reserve, up
   * to the limit. Returns the remaining count after, or `-1` when denied.
   */
  tryRecordPriority(count?: number): number;
  /** Whether a call is allowed now, as `canCall(name)`. */
  canCall(): boolean;
  /** The service's usage now, as `usage(name)`. */
  usage(): ServiceUsage;
  /** Lets go of the tracker now rather than when this handle is garbage-collected; any later call throws. */
  free(): void;
}
