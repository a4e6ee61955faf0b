// Holds (`tracker.hold`) and several services in one step (`tracker.tryRecordMany`) in the
// built package (`cargo xtask pkg`), used as a Node user would: `node --test`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

import init, { QuotaTracker } from "../../pkg/quota_core.js";

await init({
  module_or_path: readFileSync(fileURLToPath(new URL("../../pkg/quota_core_bg.wasm", import.meta.url))),
});

/** An LLM's requests and tokens, per minute; thresholds at 50 % and 80 %. */
function llm() {
  return new QuotaTracker({
    services: [
      { name: "openai-requests", limit: 10, period: "minute" },
      { name: "openai-tokens", limit: 10_000, period: "minute", reserveFraction: 0 },
    ],
  });
}

test("a hold counts its estimate; settle makes the count the actual, both ways", () => {
  const tracker = llm();
  const levels = [];
  tracker.onTransition((t) => levels.push(`${t.from} -> ${t.to} at ${t.used}`));

  // Up to critical (8,000 of 10,000), as tryRecord would admit.
  const hold = tracker.hold("openai-tokens", 7_500);
  assert.equal(hold.service, "openai-tokens");
  assert.equal(hold.estimate, 7_500);
  assert.equal(hold.settled, false);
  assert.equal(tracker.usage("openai-tokens").used, 7_500);
  assert.deepEqual(levels, ["normal -> warning at 7500"]);

  // Below the estimate: the difference comes back, and the level goes down (one transition).
  const settled = hold.settle(1_234);
  assert.deepEqual(settled, { estimate: 7_500, actual: 1_234, givenBack: 6_266, added: 0, used: 1_234 });
  assert.equal(hold.settled, true);
  assert.equal(tracker.usage("openai-tokens").used, 1_234);
  assert.deepEqual(levels, ["normal -> warning at 7500", "warning -> normal at 1234"]);

  // Above it: the excess is added, even past the limit.
  const over = tracker.hold("openai-tokens", 6_000).settle(9_500);
  assert.deepEqual(over, { estimate: 6_000, actual: 9_500, givenBack: 0, added: 3_500, used: 10_734 });
  assert.equal(tracker.usage("openai-tokens").remaining, 0);
  assert.equal(tracker.tryRecord("openai-tokens", 1).allowed, false);
  tracker.free();
});

test("cancel gives the whole estimate back; a second settle or cancel throws and changes nothing", () => {
  const tracker = llm();
  const hold = tracker.hold("openai-tokens", 2_000);
  assert.deepEqual(hold.cancel(), { estimate: 2_000, actual: 0, givenBack: 2_000, added: 0, used: 0 });
  assert.throws(() => hold.settle(5), { message: 'this hold of "openai-tokens" was already settled or cancelled' });
  assert.throws(() => hold.cancel(), { message: /already settled or cancelled/ });
  assert.equal(tracker.usage("openai-tokens").used, 0);

  const settledOnce = tracker.hold("openai-tokens", 300);
  settledOnce.settle(100);
  assert.throws(() => settledOnce.settle(100), /already settled/);
  assert.equal(tracker.usage("openai-tokens").used, 100);
  tracker.free();
});

test("a bad actual throws, naming the problem, and leaves the hold to settle", () => {
  const tracker = llm();
  const hold = tracker.hold("openai-tokens", 500);
  for (const [actual, got] of [
    [-1, "-1"],
    [1.5, "1.5"],
    [NaN, "NaN"],
    [Infinity, "Infinity"],
    [2 ** 53, "9007199254740992"],
    ["12", 'the string "12"'],
    [undefined, "undefined"],
    [null, "null"],
    [12n, "a bigint"],
  ]) {
    assert.throws(() => hold.settle(actual), {
      message: `invalid actual for the hold of "openai-tokens": it must be a whole number from 0 to Number.MAX_SAFE_INTEGER (got ${got})`,
    });
  }
  assert.equal(hold.settled, false);
  assert.equal(tracker.usage("openai-tokens").used, 500);
  assert.equal(hold.settle(0).givenBack, 500);
  tracker.free();
});

test("a refused hold throws an Error with the reason and counts nothing; bad estimates throw", () => {
  const tracker = llm();
  tracker.recordCall("openai-tokens", 7_000);
  assert.throws(() => tracker.hold("openai-tokens", 2_000), (error) => {
    assert.ok(error instanceof Error);
    assert.equal(error.reason, "critical");
    assert.match(error.message, /2000 call\(s\) to "openai-tokens" not allowed at 7000 of 10000/);
    return true;
  });
  assert.equal(tracker.usage("openai-tokens").used, 7_000);
  for (const estimate of [0, -3, 2.5, "10", undefined, null]) {
    assert.throws(() => tracker.hold("openai-requests", estimate), /invalid count for service "openai-requests"/);
  }
  assert.throws(() => tracker.hold("nope", 1), /unknown service "nope"/);
  assert.throws(() => tracker.hold(42, 1), /service must be a string/);
  assert.equal(tracker.usage("openai-requests").used, 0);
  tracker.free();
});

test("a hold freed or disposed unsettled keeps its estimate; one outlives its tracker object", () => {
  const tracker = llm();
  const freed = tracker.hold("openai-tokens", 700);
  freed.free();
  freed.free(); // twice: nothing more
  assert.equal(tracker.usage("openai-tokens").used, 700);
  assert.throws(() => freed.settle(1), { message: 'this hold of "openai-tokens" was freed' });
  assert.equal(freed.settled, false);
  assert.equal(tracker.usage("openai-tokens").used, 700);

  // What `using hold = tracker.hold(...)` calls at the end of its block, where the runtime
  // has explicit resource management (Node 20 has the symbol, not the syntax).
  if (Symbol.dispose) {
    const disposed = tracker.hold("openai-tokens", 300);
    disposed[Symbol.dispose]();
    assert.equal(tracker.usage("openai-tokens").used, 1_000);
  }

  // The hold keeps the tracker alive: settling after `free()` of the tracker object works.
  const late = tracker.hold("openai-tokens", 1_000);
  const usage = tracker.service("openai-tokens");
  tracker.free();
  assert.equal(late.settle(400).used, Symbol.dispose ? 1_400 : 1_100);
  assert.equal(usage.usage().used, late.estimate + (Symbol.dispose ? 400 : 100));
  usage.free();
});

test("a transition callback that settles the hold being settled gets an Error, once", () => {
  const tracker = llm();
  const hold = tracker.hold("openai-tokens", 7_000);
  const seen = [];
  tracker.onTransition((t) => {
    try {
      hold.settle(0);
      seen.push(`settled again at ${t.used}`);
    } catch (error) {
      seen.push(`${t.to}: ${error.message}`);
    }
  });
  assert.equal(hold.settle(10).used, 10);
  assert.deepEqual(seen, ['normal: this hold of "openai-tokens" was already settled or cancelled']);
  assert.equal(tracker.usage("openai-tokens").used, 10);
  tracker.free();
});

test("tryRecordMany records every service or none, in the order asked", () => {
  const tracker = llm();
  const both = tracker.tryRecordMany([
    ["openai-tokens", 2_000],
    ["openai-requests", 1],
  ]);
  assert.equal(both.allowed, true);
  assert.deepEqual(
    both.recorded.map(({ usage }) => [usage.name, usage.used]),
    [
      ["openai-tokens", 2_000],
      ["openai-requests", 1],
    ],
  );
  // An object of counts works too.
  assert.equal(tracker.tryRecordMany({ "openai-requests": 1, "openai-tokens": 1_000 }).allowed, true);

  // 9,000 more tokens would pass the limit: neither is recorded.
  const refused = tracker.tryRecordMany([
    ["openai-requests", 1],
    ["openai-tokens", 9_000],
  ]);
  assert.equal(refused.allowed, false);
  assert.equal(refused.reason, "limit");
  assert.equal(refused.usage.name, "openai-tokens");
  assert.equal(refused.usage.used, 3_000);
  assert.equal(tracker.usage("openai-requests").used, 2);
  assert.equal(tracker.usage("openai-tokens").used, 3_000);
  tracker.free();
});

test("tryRecordMany with bad input throws, naming the problem, and records nothing", () => {
  const tracker = llm();
  const cases = [
    [undefined, /tryRecordMany needs an array of \[service, count\] pairs or an object of counts \(got undefined\)/],
    ["openai-requests", /\(got the string "openai-requests"\)/],
    [[["openai-requests", 1, 2]], /entry 0 is an array of length 3/],
    [[["openai-requests", 1], "openai-tokens"], /entry 1 is the string "openai-tokens"/],
    [[["openai-requests", 1], ["nope", 1]], /unknown service "nope"/],
    [[["openai-requests", 1], ["openai-tokens", 0]], /invalid count for service "openai-tokens": count must be at least 1/],
    [{ "openai-requests": "1" }, /count must be a number \(got the string "1"\)/],
    [[["openai-requests", 1], ["openai-requests", 2]], /named twice/],
  ];
  for (const [calls, message] of cases) {
    assert.throws(() => tracker.tryRecordMany(calls), message);
  }
  assert.equal(tracker.snapshot().totalUsed, 0);
  // No service at all: nothing to refuse.
  assert.deepEqual(tracker.tryRecordMany([]), { allowed: true, recorded: [] });
  tracker.free();
});

test("interleaved async tasks mixing tryRecordMany, holds and tryRecord keep exact counts", async () => {
  const tracker = new QuotaTracker({
    services: [
      { name: "requests", limit: 1_000, period: "day", reserveFraction: 0, criticalThreshold: 1 },
      { name: "tokens", limit: 100_000, period: "day", reserveFraction: 0, criticalThreshold: 1 },
    ],
  });
  let requests = 0;
  let tokens = 0;
  let refusals = 0;
  async function task(seed) {
    for (let i = 0; i < 200; i++) {
      const estimate = 50 + ((seed * 31 + i * 17) % 200);
      const answer = tracker.tryRecordMany([
        ["requests", 1],
        ["tokens", estimate],
      ]);
      if (!answer.allowed) {
        refusals++;
        continue;
      }
      requests += 1;
      tokens += estimate;
      // The rest of the call's tokens, priced after its response.
      let hold;
      try {
        hold = tracker.hold("tokens", estimate);
      } catch (error) {
        assert.equal(error.reason, "limit");
        refusals++;
        continue;
      }
      await null;
      const actual = (seed + i) % 3 === 0 ? 0 : estimate - ((seed + i) % estimate);
      hold.settle(actual);
      tokens += actual;
    }
  }
  await Promise.all(Array.from({ length: 20 }, (_, seed) => task(seed)));
  assert.ok(refusals > 0, "the limits were reached");
  assert.equal(tracker.usage("requests").used, requests);
  assert.equal(tracker.usage("tokens").used, tokens);
  assert.ok(tokens <= 100_000);
  tracker.free();
});
