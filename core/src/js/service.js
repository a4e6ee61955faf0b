// The lean handle on one service of a QuotaTracker: `tracker.service(name)`. `record` and
// `tryRecord` make one call straight into wasm with plain numbers (see service.rs), which is
// what makes them cheap; anything else arrives through `handOver`.

import { countError } from "./input.js";

/** What wasm handed over during the call in progress: an Error to throw or a value to return. */
let handedOver;

export function handOver(value) {
  handedOver = value;
}

/** Takes what wasm handed over (see `handOver`). */
export function take() {
  const value = handedOver;
  handedOver = undefined;
  return value;
}

// service.rs's answers below 0.
const DENIED = -1;
const BAD_COUNT = -2;

/** Frees the wasm side of a Service the garbage collector took. */
const finalizers = new FinalizationRegistry(({ wasm, handle }) => wasm.quota_service_free(handle));

class Service {
  #wasm;
  #handle;
  #name;

  constructor(wasm, handle, name) {
    this.#wasm = wasm;
    this.#handle = handle;
    this.#name = name;
    finalizers.register(this, { wasm, handle }, this);
  }

  /** The service's name. */
  get name() {
    return this.#name;
  }

  /** Records `count` calls (default 1); returns the remaining count. */
  record(count = 1) {
    if (typeof count !== "number") throw countError(this.#name, count);
    const answer = this.#wasm.quota_service_record(this.#handle, count, Date.now());
    return this.#counted(answer, count, 0);
  }

  /** Records `count` calls (default 1) if allowed; returns the remaining count, or -1 (nothing recorded). */
  tryRecord(count = 1) {
    if (typeof count !== "number") throw countError(this.#name, count);
    const answer = this.#wasm.quota_service_try_record(this.#handle, count, Date.now());
    return this.#counted(answer, count, DENIED);
  }

  /** As tryRecord, under priority admission: may use the reserve, up to the limit. */
  tryRecordPriority(count = 1) {
    if (typeof count !== "number") throw countError(this.#name, count);
    const answer = this.#wasm.quota_service_try_record_priority(this.#handle, count, Date.now());
    return this.#counted(answer, count, DENIED);
  }

  /** Whether a call is allowed now. */
  canCall() {
    const allowed = this.#wasm.quota_service_can_call(this.#handle, Date.now());
    if (allowed >= 0) return allowed === 1;
    throw take();
  }

  /** The service's usage now, as `tracker.usage(name)` returns it. */
  usage() {
    this.#wasm.quota_service_usage(this.#handle, Date.now());
    const value = take();
    if (value instanceof Error) throw value;
    return value;
  }

  /** Lets go of the tracker now, rather than when this handle is garbage collected. */
  free() {
    if (this.#handle !== 0) {
      finalizers.unregister(this);
      this.#wasm.quota_service_free(this.#handle);
      this.#handle = 0;
    }
  }

  /**
   * A counting call's answer if it is at least `least` (each wasm call stays in its own method:
   * one call site per export keeps the hot path monomorphic).
   */
  #counted(answer, count, least) {
    if (answer >= least) return answer;
    throw answer === BAD_COUNT ? countError(this.#name, count) : take();
  }
}

export function newService(wasm, handle, name) {
  return new Service(wasm, handle, name);
}
