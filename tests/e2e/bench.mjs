// Measures the dashboard under load: 16 workers x 1,000 calls/s in locked mode, in headless
// Chromium, against the release dist/. Reads the page's own footer (frames/s and calls/s,
// measured by the app over the last second) once a second for 10 s and prints the results.
// SPEED picks the simulation speed (default 1, real time; the sync interval is simulated time,
// so at 86400 a sync falls due on almost every worker tick).
//
//   trunk build index.html --release && node tests/e2e/bench.mjs
//   SPEED=86400 node tests/e2e/bench.mjs
import { launchChromium, pauseAndSettle, serveDist, setInput } from './harness.mjs';

const WORKERS = 16;
const RATE = 1_000;
const SECONDS = 10;
const SPEED = process.env.SPEED ?? '1';

const server = await serveDist();
const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(server.url);
  await page.getByTestId('status').waitFor();
  await page.getByTestId('mode').selectOption('locked');
  await page.getByTestId('speed').selectOption(SPEED);
  await setInput(page, 'workers', WORKERS);
  await setInput(page, 'rate', RATE);
  await page.getByTestId('start').click();
  await page.waitForTimeout(2_000); // warm up: the first second's rates include start-up
  const fps = [];
  const calls = [];
  for (let i = 0; i < SECONDS; i += 1) {
    await page.waitForTimeout(1_000);
    fps.push(Number(await page.getByTestId('fps').textContent()));
    calls.push(Number(await page.getByTestId('calls-per-second').textContent()));
  }
  await pauseAndSettle(page);
  const lost = await page.getByTestId('lost-total').textContent();
  const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
  const result = {
    workers: WORKERS,
    callsPerSecondPerWorker: RATE,
    speed: Number(SPEED),
    syncs: Number(await page.getByTestId('stats-saves').textContent()),
    framesPerSecond: { median: median(fps), min: Math.min(...fps), samples: fps },
    callsPerSecond: { median: median(calls), min: Math.min(...calls), samples: calls },
    lostAfterPause: Number(lost),
  };
  console.log(JSON.stringify(result, null, 2));
} finally {
  await browser.close();
  await server.close();
}
