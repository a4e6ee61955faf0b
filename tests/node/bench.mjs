// Times the JS API of the built package, boundary included, beside two npm rate limiters:
// `node tests/node/bench.mjs` (after `cargo xtask pkg`, and `npm ci` in tests/node for the
// peers, which are left out with a note if they are not installed). Prints ns per call for
// each operation, the best of several runs.
import { readFileSync, statSync } from "node:fs";
import { gzipSync } from "node:zlib";
import init, { QuotaTracker } from "../../pkg/quota_core.js";

/** An npm peer's module, or null (with a note) when `npm ci` has not installed it. */
async function peer(name) {
  try {
    return await import(name);
  } catch (error) {
    if (error.code !== "ERR_MODULE_NOT_FOUND") throw error;
    console.log(`(${name} is not installed: run \`npm ci\` in tests/node to compare with it)`);
    return null;
  }
}
const limiterModule = await peer("limiter");
const flexibleModule = await peer("rate-limiter-flexible");

const wasmPath = new URL("../../pkg/quota_core_bg.wasm", import.meta.url);
const wasm = readFileSync(wasmPath);
await init({ module_or_path: wasm });

const CALLS = 1_000_000;
const RUNS = 7;

const tracker = new QuotaTracker({
  services: [
    { name: "api", limit: Number.MAX_SAFE_INTEGER, period: "month" },
    { name: "other", limit: 100, period: "day" },
    { name: "tokens", limit: Number.MAX_SAFE_INTEGER, period: "month" },
  ],
});
tracker.onTransition(() => {}); // a subscribed callback, as in real use
const api = tracker.service("api"); // the lean handle

// The peers, sized so that they never refuse during the runs (as `api` never does).
const limiter = limiterModule
  && new limiterModule.RateLimiter({ tokensPerInterval: Number.MAX_SAFE_INTEGER, interval: "hour" });
const flexible = flexibleModule
  && new flexibleModule.RateLimiterMemory({ points: Number.MAX_SAFE_INTEGER, duration: 3600 });

/**
 * The best ns per call of `body(n)` (n calls) over RUNS runs of CALLS calls, after a warm-up
 * run: in CPU time (user + system: robust when other processes share the cores) and in wall
 * time. `body` may be async.
 */
async function time(body) {
  await body(CALLS / 10);
  let cpu = Infinity;
  let wall = Infinity;
  for (let run = 0; run < RUNS; run++) {
    const cpuStart = process.cpuUsage();
    const wallStart = process.hrtime.bigint();
    await body(CALLS);
    const wallNs = Number(process.hrtime.bigint() - wallStart);
    const used = process.cpuUsage(cpuStart);
    cpu = Math.min(cpu, ((used.user + used.system) * 1000) / CALLS);
    wall = Math.min(wall, wallNs / CALLS);
  }
  return { cpu, wall };
}

let sink = 0; // keeps results alive so nothing is optimized away
const operations = [
  ["recordCall(service)", (n) => {
    for (let i = 0; i < n; i++) sink += tracker.recordCall("api").usage.used;
  }],
  ["recordCall(service, 3)", (n) => {
    for (let i = 0; i < n; i++) sink += tracker.recordCall("api", 3).usage.used;
  }],
  ["tryRecord(service)", (n) => {
    for (let i = 0; i < n; i++) sink += tracker.tryRecord("api").allowed ? 1 : 0;
  }],
  ["hold(service, 3).settle(2)", (n) => {
    for (let i = 0; i < n; i++) sink += tracker.hold("api", 3).settle(2).used;
  }],
  ["tryRecordMany (2 services)", (n) => {
    const calls = [["api", 1], ["tokens", 100]];
    for (let i = 0; i < n; i++) sink += tracker.tryRecordMany(calls).allowed ? 1 : 0;
  }],
  ["service.record()", (n) => {
    for (let i = 0; i < n; i++) sink += api.record();
  }],
  ["service.tryRecord()", (n) => {
    for (let i = 0; i < n; i++) sink += api.tryRecord();
  }],
  ["canCall(service)", (n) => {
    for (let i = 0; i < n; i++) sink += tracker.canCall("api") ? 1 : 0;
  }],
  ["usage(service)", (n) => {
    for (let i = 0; i < n; i++) sink += tracker.usage("api").used;
  }],
  ["snapshot() (3 services)", (n) => {
    for (let i = 0; i < n; i++) sink += tracker.snapshot().totalUsed;
  }],
  limiter && ["limiter tryRemoveTokens(1)", (n) => {
    for (let i = 0; i < n; i++) sink += limiter.tryRemoveTokens(1) ? 1 : 0;
  }],
  flexible && ["rate-limiter-flexible consume", async (n) => {
    for (let i = 0; i < n; i++) sink += (await flexible.consume("api")).consumedPoints;
  }],
].filter(Boolean);

const results = [];
for (const [name, body] of operations) results.push([name, await time(body)]);

console.log(`node ${process.version}, ${CALLS} calls per run, best of ${RUNS} runs`);
console.log(`${"operation".padEnd(30)} ${"CPU ns".padStart(7)} ${"wall ns".padStart(8)}`);
for (const [name, { cpu, wall }] of results) {
  console.log(`${name.padEnd(30)} ${cpu.toFixed(0).padStart(7)} ${wall.toFixed(0).padStart(8)}`);
}
const raw = statSync(wasmPath).size;
const gzipped = gzipSync(wasm, { level: 9 }).length;
console.log(`quota_core_bg.wasm: ${raw} bytes raw, ${gzipped} bytes gzipped (level 9)`);
if (sink === 0) console.log("(sink)");
