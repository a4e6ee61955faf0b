// Times the JS API of the built package, boundary included: `node tests/node/bench.mjs`
// (after `cargo xtask pkg`). Prints ns per call for each operation, the best of several runs.
import { readFileSync, statSync } from "node:fs";
import { gzipSync } from "node:zlib";
import init, { QuotaTracker } from "../../pkg/quota_core.js";

const wasmPath = new URL("../../pkg/quota_core_bg.wasm", import.meta.url);
const wasm = readFileSync(wasmPath);
await init({ module_or_path: wasm });

const CALLS = 1_000_000;
const RUNS = 7;

const tracker = new QuotaTracker({
  services: [
    { name: "api", limit: Number.MAX_SAFE_INTEGER, period: "month" },
    { name: "other", limit: 100, period: "day" },
  ],
});
tracker.onTransition(() => {}); // a subscribed callback, as in real use

/**
 * The best ns per call of `body` over RUNS runs of CALLS calls (after a warm-up run), in CPU
 * time (user + system: robust when other processes share the cores) and in wall time.
 */
function time(body) {
  body(CALLS / 10);
  let cpu = Infinity;
  let wall = Infinity;
  for (let run = 0; run < RUNS; run++) {
    const cpuStart = process.cpuUsage();
    const wallStart = process.hrtime.bigint();
    body(CALLS);
    const wallNs = Number(process.hrtime.bigint() - wallStart);
    const used = process.cpuUsage(cpuStart);
    cpu = Math.min(cpu, ((used.user + used.system) * 1000) / CALLS);
    wall = Math.min(wall, wallNs / CALLS);
  }
  return { cpu, wall };
}

let sink = 0; // keeps results alive so nothing is optimized away
const results = {
  "recordCall(service)": time((n) => {
    for (let i = 0; i < n; i++) sink += tracker.recordCall("api").usage.used;
  }),
  "recordCall(service, 3)": time((n) => {
    for (let i = 0; i < n; i++) sink += tracker.recordCall("api", 3).usage.used;
  }),
  "tryRecord(service)": time((n) => {
    for (let i = 0; i < n; i++) sink += tracker.tryRecord("api").allowed ? 1 : 0;
  }),
  "canCall(service)": time((n) => {
    for (let i = 0; i < n; i++) sink += tracker.canCall("api") ? 1 : 0;
  }),
  "usage(service)": time((n) => {
    for (let i = 0; i < n; i++) sink += tracker.usage("api").used;
  }),
  "snapshot() (2 services)": time((n) => {
    for (let i = 0; i < n; i++) sink += tracker.snapshot().totalUsed;
  }),
};

console.log(`node ${process.version}, ${CALLS} calls per run, best of ${RUNS} runs`);
console.log(`${"operation".padEnd(26)} ${"CPU ns".padStart(7)} ${"wall ns".padStart(8)}`);
for (const [name, { cpu, wall }] of Object.entries(results)) {
  console.log(`${name.padEnd(26)} ${cpu.toFixed(0).padStart(7)} ${wall.toFixed(0).padStart(8)}`);
}
const raw = statSync(wasmPath).size;
const gzipped = gzipSync(wasm, { level: 9 }).length;
console.log(`quota_core_bg.wasm: ${raw} bytes raw, ${gzipped} bytes gzipped (level 9)`);
if (sink === 0) console.log("(sink)");
