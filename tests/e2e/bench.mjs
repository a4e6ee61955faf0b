// Measures the dashboard under load: 16 workers x 1,000 calls/s in locked mode, in headless
// Chromium, against the release dist/. Reads the page's own footer (frames/s and calls/s,
// measured by the app over the last second) once a second for 10 s, and over the same 10 s
// counts requestAnimationFrame callbacks and reads Chromium's main-thread time (the
// DevTools protocol's Performance metrics); then traces 3 s to measure the CPU time of each
// frame's rendering (the page's DOM updates, style, layout and paint); prints the results.
//
// SPEED picks the simulation speed (default 1, real time; the sync interval is simulated time,
// so at 86400 a sync falls due on almost every worker tick). THROTTLE slows the page's CPU by
// that factor (DevTools' CPU throttling, default 1: none), which makes the frame rate depend on
// the page's own work more than on what else the machine runs. DIST serves another build.
//
//   trunk build index.html --release && node tests/e2e/bench.mjs
//   SPEED=86400 THROTTLE=4 node tests/e2e/bench.mjs
import { launchChromium, pauseAndSettle, serveDist, setInput } from './harness.mjs';

const WORKERS = 16;
const RATE = 1_000;
const SECONDS = 10;
const SPEED = process.env.SPEED ?? '1';
const THROTTLE = Number(process.env.THROTTLE ?? '1');
if (!(THROTTLE >= 1)) throw new Error(`THROTTLE must be a number >= 1, not ${process.env.THROTTLE}`);

const TRACE_SECONDS = 3;

/**
 * The page's main-thread time so far, in ms: CPU time (`ThreadTime`, what the thread really
 * ran, whatever else the machine runs), the wall time of its tasks, and of those the script
 * and the style and layout work.
 */
async function durations(cdp) {
  const { metrics } = await cdp.send('Performance.getMetrics');
  const ms = (name) => 1_000 * (metrics.find((m) => m.name === name)?.value ?? NaN);
  return {
    cpu: ms('ThreadTime'),
    task: ms('TaskDuration'),
    script: ms('ScriptDuration'),
    styleAndLayout: ms('RecalcStyleDuration') + ms('LayoutDuration'),
  };
}

/**
 * The CPU time (thread time, in ms) of the page's rendering per frame, from a Chromium trace:
 * the task that runs the animation frame callbacks (the page's update of the DOM) and then
 * style, layout and paint, and those parts of it. Unlike frames/s, it does not depend on what
 * else the machine runs, nor on the workers' share of the main thread.
 */
function renderingPerFrame(trace) {
  const events = JSON.parse(trace).traceEvents.filter((e) => e.ph === 'X');
  const frames = events.filter((e) => e.name === 'FireAnimationFrame');
  if (frames.length === 0) throw new Error('the trace has no animation frames');
  const thread = events.filter((e) => e.tid === frames[0].tid);
  const tasks = new Set();
  for (const frame of frames) {
    const task = thread.find((e) => e.name === 'RunTask' && e.ts <= frame.ts && e.ts + e.dur >= frame.ts + frame.dur);
    if (task) tasks.add(task);
  }
  const perFrame = (list) => Number((list.reduce((sum, e) => sum + (e.tdur ?? 0), 0) / tasks.size / 1_000).toFixed(2));
  const named = (...names) => perFrame(thread.filter((e) => names.includes(e.name)));
  return {
    frames: tasks.size,
    total: perFrame([...tasks]),
    animationFrameCallbacks: named('FireAnimationFrame'),
    style: named('UpdateLayoutTree'),
    layout: named('Layout'),
    paint: named('PrePaint', 'Paint'),
  };
}

const server = await serveDist();
const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Performance.enable');
  await cdp.send('Emulation.setCPUThrottlingRate', { rate: THROTTLE });
  await page.goto(server.url);
  await page.getByTestId('status').waitFor();
  await page.getByTestId('mode').selectOption('locked');
  await page.getByTestId('speed').selectOption(SPEED);
  await setInput(page, 'workers', WORKERS);
  await setInput(page, 'rate', RATE);
  await page.getByTestId('start').click();
  await page.waitForTimeout(2_000); // warm up: the first second's rates include start-up
  // A requestAnimationFrame counter beside the page's own.
  await page.evaluate(() => {
    window.benchFrames = 0;
    const tick = () => {
      window.benchFrames += 1;
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
  const start = { at: Date.now(), frames: 0, ...(await durations(cdp)) };
  const fps = [];
  const calls = [];
  for (let i = 0; i < SECONDS; i += 1) {
    await page.waitForTimeout(1_000);
    fps.push(Number(await page.getByTestId('fps').textContent()));
    calls.push(Number(await page.getByTestId('calls-per-second-simulation').textContent()));
  }
  const end = { at: Date.now(), frames: await page.evaluate(() => window.benchFrames), ...(await durations(cdp)) };
  // Then a few seconds traced (tracing slows the page a little: not during the frame count).
  await browser.startTracing(page, {
    categories: ['devtools.timeline', 'disabled-by-default-devtools.timeline'],
  });
  await page.waitForTimeout(TRACE_SECONDS * 1_000);
  const rendering = renderingPerFrame(await browser.stopTracing());
  await pauseAndSettle(page);
  const lost = await page.getByTestId('lost-total').textContent();
  const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
  const frames = end.frames - start.frames;
  const perFrame = (key) => Number(((end[key] - start[key]) / frames).toFixed(2));
  const result = {
    workers: WORKERS,
    callsPerSecondPerWorker: RATE,
    speed: Number(SPEED),
    cpuThrottling: THROTTLE,
    syncs: Number(await page.getByTestId('stats-saves').textContent()),
    framesPerSecond: { median: median(fps), min: Math.min(...fps), samples: fps },
    animationFramesPerSecond: Number((frames / ((end.at - start.at) / 1_000)).toFixed(1)),
    mainThreadMsPerFrame: {
      cpu: perFrame('cpu'),
      task: perFrame('task'),
      script: perFrame('script'),
      styleAndLayout: perFrame('styleAndLayout'),
    },
    renderingCpuMsPerFrame: rendering,
    callsPerSecond: { median: median(calls), min: Math.min(...calls), samples: calls },
    lostAfterPause: Number(lost),
  };
  console.log(JSON.stringify(result, null, 2));
} finally {
  await browser.close();
  await server.close();
}
