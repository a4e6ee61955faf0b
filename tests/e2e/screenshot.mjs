// The README's screenshot: a locked run in progress, after a short store outage, with finnhub
// critical and sendgrid past its warning level (tiingo's hour critical, its day filling).
//
// The end-to-end test takes it into target/e2e/dashboard.png (git-ignored: a test run leaves
// `git status` clean); `cargo xtask screenshot` runs this file to refresh docs/dashboard.png:
//
//   trunk build index.html --release && node tests/e2e/screenshot.mjs [path]
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ROOT, launchChromium, pauseAndSettle, serveDist, setInput, waitUntil } from './harness.mjs';

/** Where the end-to-end test writes its screenshot. */
export const TEST_SCREENSHOT = join(ROOT, 'target', 'e2e', 'dashboard.png');

/**
 * Brings `page` (the dashboard, loaded) to the state the screenshot shows and writes a full-page
 * PNG to `path`.
 */
export async function takeScreenshot(page, path) {
  await page.getByTestId('mode').selectOption('locked');
  await setInput(page, 'workers', 4);
  await setInput(page, 'rate', 8);
  await page.getByTestId('reset').click();
  await page.getByTestId('start').click();
  // tiingo's hour (50) and finnhub's minute (60) go critical, then sendgrid (100/day) reaches
  // its warning level.
  const level = (name) => page.getByTestId(`level-${name}`).textContent();
  // A short store outage on the way, so the Store sync panel shows both of its events.
  const reduced = () => page.getByTestId('reduced-rate').textContent();
  await page.getByTestId('store-outage').check();
  await waitUntil('reduced rate "on"', async () => (await reduced()) === 'on');
  await page.getByTestId('store-outage').uncheck();
  await waitUntil('reduced rate "off"', async () => (await reduced()) === 'off');
  await waitUntil('finnhub critical and sendgrid warning', async () =>
    ['critical', 'exhausted'].includes(await level('finnhub')) && (await level('sendgrid')) !== 'normal', 40_000);
  await pauseAndSettle(page);
  mkdirSync(dirname(path), { recursive: true });
  await page.screenshot({ path, fullPage: true });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const path = resolve(process.argv[2] ?? join(ROOT, 'docs', 'dashboard.png'));
  const server = await serveDist();
  const browser = await launchChromium();
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(server.url);
    await page.getByTestId('status').waitFor();
    await takeScreenshot(page, path);
    console.log(`wrote ${path}`);
  } finally {
    await browser.close();
    await server.close();
  }
}
