// A hold of calls admitted at an estimate: `tracker.hold(service, estimate)`. It is a number
// naming wasm's entry (see hold.rs); settling calls straight into wasm with plain numbers and
// takes the answer through `handOver`.

import { describe } from "./input.js";
import { take } from "./service.js";

/** Frees the wasm side of a Hold the garbage collector took unsettled (its estimate stays). */
const finalizers = new FinalizationRegistry(({ wasm, number }) => wasm.quota_hold_free(number));

class Hold {
  #wasm;
  /** The wasm entry's number; 0 once settled, cancelled or freed. */
  #number;
  #service;
  #estimate;
  #settled = false;

  constructor(wasm, number, service, estimate) {
    this.#wasm = wasm;
    this.#number = number;
    this.#service = service;
    this.#estimate = estimate;
    finalizers.register(this, { wasm, number }, this);
  }

  /** The service held. */
  get service() {
    return this.#service;
  }

  /** The calls admitted. */
  get estimate() {
    return this.#estimate;
  }

  /** Whether `settle` or `cancel` has been called. */
  get settled() {
    return this.#settled;
  }

  /** Settles the hold at `actual` calls; returns `{ estimate, actual, givenBack, added, used }`. */
  settle(actual) {
    if (!(Number.isSafeInteger(actual) && actual >= 0)) {
      throw new Error(
        `invalid actual for the hold of ${JSON.stringify(this.#service)}: it must be a whole number ` +
          `from 0 to Number.MAX_SAFE_INTEGER (got ${describe(actual)})`,
      );
    }
    return this.#finish(actual);
  }

  /** Gives the whole estimate back: the call was never made (`settle(0)`). */
  cancel() {
    return this.#finish(0);
  }

  /** Lets go of an unsettled hold now (its estimate stays counted); settling it then throws. */
  free() {
    const number = this.#take();
    if (number !== 0) this.#wasm.quota_hold_free(number);
  }

  #finish(actual) {
    if (this.#settled) {
      throw new Error(`this hold of ${JSON.stringify(this.#service)} was already settled or cancelled`);
    }
    const number = this.#take();
    if (number === 0) throw new Error(`this hold of ${JSON.stringify(this.#service)} was freed`);
    this.#settled = true;
    // `-0` is 0 to wasm too.
    this.#wasm.quota_hold_settle(number, actual);
    const answer = take();
    if (answer instanceof Error) throw answer;
    return answer;
  }

  /** The entry's number, forgotten here (before any call into wasm: see hold.rs). */
  #take() {
    const number = this.#number;
    if (number !== 0) {
      this.#number = 0;
      finalizers.unregister(this);
    }
    return number;
  }
}

// `using hold = tracker.hold(...)` where the runtime has explicit resource management: an
// unsettled hold keeps its estimate, as a dropped Rust hold does. Left out of the TypeScript
// declarations (es2022 has no `Symbol.dispose`).
if (Symbol.dispose) Hold.prototype[Symbol.dispose] = Hold.prototype.free;

export function newHold(wasm, number, service, estimate) {
  return new Hold(wasm, number, service, estimate);
}
