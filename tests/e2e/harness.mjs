// Shared by the end-to-end test and the benchmark: serves the release dist/ on 127.0.0.1 and
// launches the system Chromium through playwright-core (never a downloaded browser).
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
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

/** The services whose counters table row says they count calls. */
export async function callServices(page) {
  const names = [];
  for (const name of await serviceNames(page)) {
    if ((await page.getByTestId(`unit-${name}`).textContent()) === 'calls') names.push(name);
  }
  return names;
}

/**
 * Token service `name`'s numbers, as the page shows them on one frame (read in one evaluate,
 * between two animation frames): the counters row, the identity's terms, the card's.
 */
export async function readTokens(page, name) {
  const ids = {
    issued: `issued-${name}`, denied: `denied-${name}`, recorded: `recorded-${name}`,
    lost: `lost-${name}`, holdsIssued: `holds-issued-${name}`, holdsDenied: `holds-denied-${name}`,
    added: `holds-added-${name}`, settled: `holds-settled-${name}`,
    givenBack: `holds-given-back-${name}`, inFlight: `holds-in-flight-${name}`,
    kept: `holds-kept-${name}`, held: `held-${name}`, used: `used-${name}`,
    off: `holds-off-${name}`, status: 'status',
  };
  return page.evaluate((ids) => {
    const read = {};
    for (const [key, id] of Object.entries(ids)) {
      const text = document.querySelector(`[data-testid="${id}"]`).textContent.trim();
      if (key === 'status') read[key] = text;
      else if (/^\d+$/.test(text)) read[key] = Number(text);
      else throw new Error(`${id} shows ${JSON.stringify(text)}, not an integer`);
    }
    return read;
  }, ids);
}

/**
 * Checks token service `name`'s identity with the page's numbers, issued + added = denied +
 * settled + given back + in flight + kept, and that the page says it holds; with `lost: 0`
 * (the default) also that the counter recorded exactly what the holds say (settled + in
 * flight + kept). Returns the numbers.
 */
export async function assertTokensAddUp(page, name, { lost = 0 } = {}) {
  const t = await readTokens(page, name);
  const at = JSON.stringify(t);
  assert.equal(t.holdsIssued, t.issued, `the identity's issued is the table's: ${at}`);
  assert.equal(t.holdsDenied, t.denied, `the identity's denied is the table's: ${at}`);
  assert.equal(
    t.issued + t.added,
    t.denied + t.settled + t.givenBack + t.inFlight + t.kept,
    `issued + added = denied + settled + given back + in flight + kept: ${at}`,
  );
  assert.equal(t.off, 0, `the page agrees: off by 0: ${at}`);
  assert.equal(t.held, t.inFlight, `the card's held in flight is the identity's: ${at}`);
  if (lost === 0) {
    assert.equal(t.lost, 0, `nothing lost: ${at}`);
    assert.equal(t.recorded, t.settled + t.inFlight + t.kept, `recorded = settled + in flight + kept: ${at}`);
  }
  return t;
}

/** Samples token service `name`'s identity `times` times, 150 ms apart, while it runs. */
export async function assertTokensAddUpWhileRunning(page, name, times, options) {
  let holding = 0;
  for (let i = 0; i < times; i += 1) {
    const t = await assertTokensAddUp(page, name, options);
    // (Not `used >= held`: a hold counts in the window it was taken in, which may have ended.)
    if (t.inFlight > 0) holding += 1;
    await new Promise((r) => setTimeout(r, 150));
  }
  return holding;
}
