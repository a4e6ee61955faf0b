// Shared by the end-to-end test and the benchmark: serves the release dist/ on 127.0.0.1 and
// launches the system Chromium through playwright-core (never a downloaded browser).
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const DIST = resolve(process.env.DIST ?? join(ROOT, 'dist'));

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.css': 'text/css; charset=utf-8',
};

/** Serves DIST on 127.0.0.1 at a free port; resolves to { url, close }. */
export async function serveDist() {
  if (!existsSync(join(DIST, 'index.html'))) {
    throw new Error(`${DIST}/index.html is missing: run \`trunk build index.html --release\` first`);
  }
  const server = createServer(async (request, response) => {
    const path = decodeURIComponent(new URL(request.url, 'http://x').pathname);
    const file = normalize(join(DIST, path.endsWith('/') ? `${path}index.html` : path));
    if (!file.startsWith(DIST + sep)) {
      response.writeHead(403).end();
      return;
    }
    try {
      const body = await readFile(file);
      response.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
      response.end(body);
    } catch {
      response.writeHead(404).end('not found');
    }
  });
  await new Promise((ready) => server.listen(0, '127.0.0.1', ready));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () => new Promise((done) => server.close(done)),
  };
}

/** Headless /usr/bin/chromium with the flags this machine needs. */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** The integer text of the element with data-testid `id`. */
export async function count(page, id) {
  const text = (await page.getByTestId(id).textContent()).trim();
  if (!/^\d+$/.test(text)) throw new Error(`${id} shows ${JSON.stringify(text)}, not an integer`);
  return Number(text);
}

/** Sets an input the way a user does: type the value, then leave the field. */
export async function setInput(page, id, value) {
  const input = page.getByTestId(id);
  await input.fill(String(value));
  await input.press('Tab');
}

/** Waits until `condition()` resolves truthy, polling; fails with `what` after `timeoutMs`. */
export async function waitUntil(what, condition, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The service names, from the cards on the page. */
export async function serviceNames(page) {
  const ids = await page
    .locator('[data-testid^="card-"]')
    .evaluateAll((cards) => cards.map((card) => card.dataset.testid));
  return ids.map((id) => id.slice('card-'.length));
}

/** Pauses, then waits until every worker stopped (the counters are final). */
export async function pauseAndSettle(page) {
  await page.getByTestId('pause').click();
  await waitUntil('status "paused"', async () => (await page.getByTestId('status').textContent()) === 'paused');
}
