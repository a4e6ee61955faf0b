// The soak: the release dashboard left running in headless Chromium at the simulator's cap
// (64 workers x 1,000 calls/s, locked mode, the fastest speed) with the instances view running,
// sampled every SAMPLE seconds: the renderer process's memory (resident, from /proc of the pid
// that Chromium's SystemInfo.getProcessInfo names), the JS heap and Blink's node count
// (Performance.getMetrics), the elements in the document, the nodes inserted into it per
// second (a MutationObserver), frames per second (requestAnimationFrame), localStorage writes
// per second (Storage.prototype.setItem, counted), and the CPU share of the renderer and of
// Chromium's storage service (from /proc/<pid>/stat).
//
// Before the soak (unless --no-sweep) every mode (locked try_record, locked count only, racy)
// at every speed runs at the cap for a few seconds and its frame rate is measured.
//
// Fails (exit 1) when, after the warm-up, the renderer's memory grows past --max-growth (10 %)
// of its size at the end of the warm-up, when the document's element count climbs past 5 % of
// it, when a frame rate (sweep or soak sample) is under --min-fps (30; 0 turns the check off),
// or when a count is off (locked: issued = denied + recorded, lost 0, the LLM's token identity;
// instances: lost 0).
//
//   trunk build index.html --release
//   node tests/e2e/soak.mjs [--minutes 30] [--sample 30] [--warmup 60] [--min-fps 30]
//                           [--max-growth 0.10] [--no-sweep] [--json out.json]
// `cargo xtask soak [minutes]` does both; `cargo xtask test` runs a short soak.
import { readFileSync, readdirSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { launchChromium, serveDist, setInput, count, pauseAndSettle, waitUntil } from './harness.mjs';

const USAGE = 'usage: node tests/e2e/soak.mjs [--minutes M] [--sample S] [--warmup S] [--min-fps F] '
  + '[--max-growth G] [--no-sweep] [--json PATH]';

function parseArgs(argv) {
  const options = { minutes: 30, sample: 30, warmup: 60, minFps: 30, maxGrowth: 0.1, sweep: true, json: null };
  const numbers = { '--minutes': 'minutes', '--sample': 'sample', '--warmup': 'warmup', '--min-fps': 'minFps', '--max-growth': 'maxGrowth' };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--no-sweep') {
      options.sweep = false;
    } else if (arg === '--json') {
      options.json = argv[++i];
      if (!options.json) throw new Error(`--json needs a path\n${USAGE}`);
    } else if (numbers[arg]) {
      const text = argv[++i];
      const value = Number(text);
      if (text === undefined || !Number.isFinite(value) || value < 0) {
        throw new Error(`${arg} must be a number >= 0 (got ${JSON.stringify(text)})\n${USAGE}`);
      }
      options[numbers[arg]] = value;
    } else {
      throw new Error(`unknown argument ${JSON.stringify(arg)}\n${USAGE}`);
    }
  }
  if (options.minutes * 60 <= options.warmup) {
    throw new Error(`--minutes (${options.minutes}) must be longer than --warmup (${options.warmup} s)\n${USAGE}`);
  }
  if (options.sample <= 0) throw new Error(`--sample must be above 0\n${USAGE}`);
  return options;
}

const WORKERS = 64;
const RATE = 1_000;
const SPEEDS = ['1', '60', '3600', '86400'];
const MODES = [
  { name: 'locked, try_record', mode: 'locked', admission: 'try' },
  { name: 'locked, count only', mode: 'locked', admission: 'count' },
  { name: 'racy', mode: 'racy', admission: null },
];
const SOAK_SPEED = '86400';

/** Counters the page keeps for the soak: frames, inserted nodes, localStorage writes. */
function instrument() {
  window.soak = { frames: 0, inserted: 0, writes: 0, bytes: 0 };
  const setItem = Storage.prototype.setItem;
  Storage.prototype.setItem = function counted(key, value) {
    window.soak.writes += 1;
    window.soak.bytes += String(value).length;
    return setItem.call(this, key, value);
  };
  const tick = () => {
    window.soak.frames += 1;
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  const observe = () => {
    new MutationObserver((records) => {
      for (const record of records) {
        for (const node of record.addedNodes) {
          window.soak.inserted += 1 + (node.querySelectorAll ? node.querySelectorAll('*').length : 0);
        }
      }
    }).observe(document.body, { childList: true, subtree: true });
  };
  if (document.body) observe();
  else document.addEventListener('DOMContentLoaded', observe);
}

/** `/proc/<pid>/stat`'s parent pid and CPU seconds (user + system), or null if it is gone. */
function stat(pid) {
  try {
    // The command name (field 2) may hold spaces: split after its closing parenthesis.
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(fields[1]), cpu: (Number(fields[11]) + Number(fields[12])) / 100 };
  } catch {
    return null;
  }
}

const cmdline = (pid) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
};

/**
 * This browser's processes: its renderers (from Chromium's SystemInfo.getProcessInfo) and its
 * storage service (the utility process of that sub-type, found in /proc: getProcessInfo does
 * not list it), each with its CPU seconds so far.
 */
async function processes(browserCdp) {
  const { processInfo } = await browserCdp.send('SystemInfo.getProcessInfo');
  const renderers = processInfo
    .filter((p) => p.type === 'renderer')
    .map((p) => ({ pid: p.id, cpu: stat(p.id)?.cpu ?? NaN }));
  // The storage service is started like the renderers (by the zygote, here) or by the
  // browser: look for it among the children of a renderer's ancestors.
  const ancestors = new Set();
  for (let pid = stat(renderers[0]?.pid)?.ppid; pid > 1 && ancestors.size < 4; pid = stat(pid)?.ppid) {
    ancestors.add(pid);
  }
  let storage = null;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const info = stat(entry);
    if (info && ancestors.has(info.ppid) && cmdline(entry).some((a) => a.includes('StorageService'))) {
      storage = { pid: Number(entry), cpu: info.cpu };
      break;
    }
  }
  return { renderers, storage };
}

/** Resident memory of `pid` in MiB (VmRSS), or NaN if it is gone. */
function residentMiB(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(status.match(/^VmRSS:\s+(\d+) kB/m)[1]) / 1024;
  } catch {
    return NaN;
  }
}

async function metrics(cdp) {
  const { metrics: list } = await cdp.send('Performance.getMetrics');
  const get = (name) => list.find((m) => m.name === name)?.value ?? NaN;
  return { jsHeapMiB: get('JSHeapUsedSize') / 2 ** 20, nodes: get('Nodes') };
}

/** The page's counters now. */
const pageCounters = (page) => page.evaluate(() => ({
  ...window.soak,
  elements: document.getElementsByTagName('*').length,
  at: performance.now(),
}));

/** Frames/s over `seconds`, by the page's requestAnimationFrame count. */
async function framesPerSecond(page, seconds) {
  const before = await pageCounters(page);
  await page.waitForTimeout(seconds * 1_000);
  const after = await pageCounters(page);
  return (after.frames - before.frames) / ((after.at - before.at) / 1_000);
}

async function setMode(page, { mode, admission }) {
  await page.getByTestId('mode').selectOption(mode);
  if (admission) await page.getByTestId('admission').selectOption(admission);
}

const round = (value, digits = 1) => Number(value.toFixed(digits));

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const failures = [];
  const server = await serveDist();
  const browser = await launchChromium();
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors = [];
    page.on('pageerror', (error) => errors.push(error.message));
    page.on('console', (message) => {
      if (message.type() === 'error') errors.push(message.text());
    });
    await page.addInitScript(instrument);
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Performance.enable');
    const browserCdp = await browser.newBrowserCDPSession();
    await page.goto(server.url);
    await page.getByTestId('status').waitFor();
    await page.getByTestId('reset').click();
    await setInput(page, 'workers', WORKERS);
    await setInput(page, 'rate', RATE);
    await page.getByTestId('start').click();
    await page.getByTestId('instances-start').click();

    const sweep = [];
    if (options.sweep) {
      console.log(`frame rate at the cap (${WORKERS} workers x ${RATE} calls/s, instances running):`);
      for (const mode of MODES) {
        await setMode(page, mode);
        for (const speed of SPEEDS) {
          await page.getByTestId('speed').selectOption(speed);
          await page.waitForTimeout(2_000);
          const fps = await framesPerSecond(page, 5);
          sweep.push({ mode: mode.name, speed: Number(speed), fps: round(fps) });
          console.log(`  ${mode.name}, speed ${speed}x: ${round(fps)} frames/s`);
          if (options.minFps > 0 && fps < options.minFps) {
            failures.push(`${mode.name} at speed ${speed}x: ${round(fps)} frames/s, under ${options.minFps}`);
          }
        }
      }
    }

    // The soak itself: locked (try_record), the fastest speed, a fresh run.
    await setMode(page, MODES[0]);
    await page.getByTestId('speed').selectOption(SOAK_SPEED);
    await page.getByTestId('reset').click();
    console.log(`soak: ${options.minutes} min, locked try_record at ${SOAK_SPEED}x, ${WORKERS} x ${RATE} calls/s, instances running; a sample every ${options.sample} s`);
    console.log('   t s | renderer MiB | JS heap MiB | Blink nodes | elements | inserted/s | frames/s | storage writes/s | renderer CPU % | storage CPU %');
    const samples = [];
    const start = Date.now();
    let last = { counters: await pageCounters(page), procs: await processes(browserCdp), at: Date.now() };
    const end = start + options.minutes * 60_000;
    while (Date.now() < end) {
      await page.waitForTimeout(Math.min(options.sample * 1_000, Math.max(0, end - Date.now())));
      const now = Date.now();
      const counters = await pageCounters(page);
      const procs = await processes(browserCdp);
      const { jsHeapMiB, nodes } = await metrics(cdp);
      // The page's renderer: the largest one (an empty spare renderer may exist beside it).
      const renderer = procs.renderers
        .map((p) => ({ ...p, rss: residentMiB(p.pid) }))
        .sort((a, b) => b.rss - a.rss)[0];
      const cpuShare = (proc, before) => (proc && before && proc.pid === before.pid
        ? (100 * (proc.cpu - before.cpu)) / ((now - last.at) / 1_000)
        : NaN);
      const rendererBefore = renderer && last.procs.renderers.find((p) => p.pid === renderer.pid);
      const seconds = (counters.at - last.counters.at) / 1_000;
      const sample = {
        t: round((now - start) / 1_000, 0),
        rendererMiB: round(renderer?.rss ?? NaN),
        jsHeapMiB: round(jsHeapMiB),
        blinkNodes: nodes,
        elements: counters.elements,
        insertedPerSecond: round((counters.inserted - last.counters.inserted) / seconds),
        fps: round((counters.frames - last.counters.frames) / seconds),
        storageWritesPerSecond: round((counters.writes - last.counters.writes) / seconds, 2),
        rendererCpuPercent: round(cpuShare(renderer, rendererBefore)),
        storageCpuPercent: round(cpuShare(procs.storage, last.procs.storage)),
      };
      samples.push(sample);
      console.log(`${String(sample.t).padStart(6)} | ${String(sample.rendererMiB).padStart(12)} | ${String(sample.jsHeapMiB).padStart(11)} | ${String(sample.blinkNodes).padStart(11)} | ${String(sample.elements).padStart(8)} | ${String(sample.insertedPerSecond).padStart(10)} | ${String(sample.fps).padStart(8)} | ${String(sample.storageWritesPerSecond).padStart(16)} | ${String(sample.rendererCpuPercent).padStart(14)} | ${String(sample.storageCpuPercent).padStart(13)}`);
      last = { counters, procs, at: now };
    }

    const baseline = samples.filter((s) => s.t <= options.warmup + 1).at(-1) ?? samples[0];
    const after = samples.filter((s) => s.t > baseline.t);
    if (after.length === 0) failures.push('no sample after the warm-up: run longer');
    const growth = (s) => s.rendererMiB / baseline.rendererMiB - 1;
    const maxGrowth = Math.max(0, ...after.map(growth));
    if (!(maxGrowth <= options.maxGrowth)) {
      failures.push(`renderer memory grew ${round(100 * maxGrowth)} % past its ${baseline.rendererMiB} MiB at ${baseline.t} s (limit ${100 * options.maxGrowth} %)`);
    }
    const maxElements = Math.max(...after.map((s) => s.elements));
    if (maxElements > baseline.elements * 1.05) {
      failures.push(`the document's elements climbed from ${baseline.elements} to ${maxElements}`);
    }
    const slow = samples.filter((s) => options.minFps > 0 && s.fps < options.minFps);
    if (slow.length > 0) failures.push(`frames/s under ${options.minFps} at ${slow.map((s) => `${s.t} s (${s.fps})`).join(', ')}`);

    // The counts stay exact: locked mode loses nothing, nor do the instances (delta sync).
    await pauseAndSettle(page);
    await page.getByTestId('instances-pause').click();
    await waitUntil('instances paused', async () => (await page.getByTestId('instances-status').textContent()) === 'paused');
    const issued = await count(page, 'issued-total');
    const denied = await count(page, 'denied-total');
    const recorded = await count(page, 'recorded-total');
    const lost = await count(page, 'lost-total');
    const instancesLost = await count(page, 'instances-lost-total');
    if (issued !== denied + recorded || lost !== 0) failures.push(`locked counts off: issued ${issued}, denied ${denied}, recorded ${recorded}, lost ${lost}`);
    if (instancesLost !== 0) failures.push(`the instances lost ${instancesLost}`);
    // The LLM's tokens (left out of the totals, which add calls): their identity and nothing lost.
    const off = await count(page, 'holds-off-llm-tokens');
    const tokensLost = await count(page, 'lost-llm-tokens');
    if (off !== 0 || tokensLost !== 0) failures.push(`token counts off: identity off by ${off}, lost ${tokensLost}`);
    if (errors.length > 0) failures.push(`page errors: ${errors.slice(0, 5).join(' | ')}`);

    const summary = {
      minutes: options.minutes,
      baseline: { t: baseline.t, rendererMiB: baseline.rendererMiB, elements: baseline.elements },
      final: samples.at(-1),
      maxRendererGrowthPercent: round(100 * maxGrowth),
      minSoakFps: Math.min(...samples.map((s) => s.fps)),
      maxStorageWritesPerSecond: Math.max(...samples.map((s) => s.storageWritesPerSecond)),
      counts: { issued, denied, recorded, lost, instancesLost },
      sweep,
      samples,
      failures,
    };
    console.log(`counts: issued ${issued} = denied ${denied} + recorded ${recorded}, lost ${lost}; instances lost ${instancesLost}`);
    console.log(`renderer memory: ${baseline.rendererMiB} MiB at ${baseline.t} s, at most ${round(100 * maxGrowth)} % more after; elements ${baseline.elements} -> ${summary.final.elements}`);
    if (options.json) {
      mkdirSync(dirname(options.json), { recursive: true });
      writeFileSync(options.json, JSON.stringify(summary, null, 2));
    }
  } finally {
    await browser.close();
    await server.close();
  }
  if (failures.length > 0) {
    console.error(`soak FAILED:\n  ${failures.join('\n  ')}`);
    process.exit(1);
  }
  console.log('soak passed');
}

main().catch((error) => {
  console.error(error.message ?? error);
  process.exit(2);
});
