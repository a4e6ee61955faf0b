// End to end: the release build in headless Chromium, driven through the test ids.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import {
  assertTokensAddUp, assertTokensAddUpWhileRunning, callServices, count, launchChromium,
  pauseAndSettle, serveDist, serviceNames, setInput, waitUntil,
} from './harness.mjs';
import { TEST_SCREENSHOT, takeScreenshot } from './screenshot.mjs';

let server;
let browser;
let page;

before(async () => {
  server = await serveDist();
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  page.on('pageerror', (error) => errors.push(error));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(new Error(message.text()));
  });
  page.errors = errors;
  await page.goto(server.url);
  await page.getByTestId('status').waitFor();
});

after(async () => {
  await browser?.close();
  await server?.close();
});

test('the page loads ready to start, with a card per default service', async () => {
  assert.equal(await page.getByTestId('status').textContent(), 'ready');
  assert.deepEqual(await serviceNames(page), ['tiingo', 'finnhub', 'sendgrid', 'llm-tokens']);
  // The counters table says each service's unit: the LLM's quota is in tokens.
  for (const name of ['tiingo', 'finnhub', 'sendgrid']) {
    assert.equal(await page.getByTestId(`unit-${name}`).textContent(), 'calls', name);
  }
  assert.equal(await page.getByTestId('unit-llm-tokens').textContent(), 'tokens');
  assert.equal(await page.getByTestId('unit-total').textContent(), 'calls', 'totals add calls only');
  assert.equal(await page.getByTestId('held-llm-tokens').textContent(), '0');
  assert.equal(await page.getByTestId('held-tiingo').isVisible(), false, 'only a token service holds');
  assert.equal(await page.getByTestId('holds-off-llm-tokens').textContent(), '0');
  // finnhub has two limits (the simulation's services): a bar each, and at rest 30 a second
  // leaves less headroom than 60 a minute, so it binds and the card's numbers are its.
  assert.equal(await page.getByTestId('window-limit-finnhub').textContent(), '60');
  assert.equal(await page.getByTestId('window-limit-2-finnhub').textContent(), '30');
  assert.equal(await page.getByTestId('binding-2-finnhub').textContent(), 'binding');
  assert.equal(await page.getByTestId('limit-finnhub').textContent(), '30');
  assert.equal(await page.locator('[data-testid="card-tiingo"] [role="meter"]').count(), 2);
  assert.equal(await page.locator('[data-testid="card-sendgrid"] [role="meter"]').count(), 1);
  assert.equal(await page.getByTestId('level-finnhub').textContent(), 'normal');
  assert.equal((await page.getByTestId('start').textContent()).trim(), 'Start');
  assert.ok(await page.getByTestId('pause').isDisabled(), 'nothing to pause yet');
  assert.deepEqual(page.errors, []);
});

test('at the defaults, Start shows a level change within a few seconds', async () => {
  assert.equal(await page.getByTestId('workers').inputValue(), '4');
  assert.equal(await page.getByTestId('rate').inputValue(), '8');
  const started = Date.now();
  await page.getByTestId('start').click();
  assert.equal((await page.getByTestId('start').textContent()).trim(), 'Running');
  assert.ok(await page.getByTestId('start').isDisabled(), 'a running simulation cannot start again');
  const first = page.locator('[data-testid="transition"]').first();
  await first.waitFor({ timeout: 6_000 });
  const seconds = (Date.now() - started) / 1_000;
  // tiingo's hour (50) and finnhub's minute (60) reach their warning levels within a second
  // of each other.
  assert.ok(['tiingo', 'finnhub'].includes(await first.getAttribute('data-service')));
  assert.ok(seconds < 6, `first level change after ${seconds} s`);
  await pauseAndSettle(page);
  assert.equal((await page.getByTestId('start').textContent()).trim(), 'Resume');
  await page.getByTestId('reset').click();
  assert.equal(await page.getByTestId('status').textContent(), 'ready');
  assert.deepEqual(page.errors, []);
});

test('locked mode, count only: 8 workers, every issued unit is recorded', async () => {
  await page.getByTestId('mode').selectOption('locked');
  // record_call: every call is counted, past the limit too (the default, try_record, is below).
  await page.getByTestId('admission').selectOption('count');
  await setInput(page, 'workers', 8);
  await setInput(page, 'rate', 400);
  await page.getByTestId('start').click();
  await waitUntil('2,000 calls', async () => (await count(page, 'issued-total')) >= 2_000);
  await pauseAndSettle(page);

  let issuedTotal = 0;
  for (const name of await callServices(page)) {
    const issued = await count(page, `issued-${name}`);
    const recorded = await count(page, `recorded-${name}`);
    assert.ok(issued > 0, `${name} got calls`);
    assert.equal(recorded, issued, `${name}: recorded equals issued`);
    assert.equal(await count(page, `denied-${name}`), 0, `${name}: record_call denies nothing`);
    assert.equal(await count(page, `lost-${name}`), 0, `${name}: nothing lost`);
    issuedTotal += issued;
  }
  assert.ok(issuedTotal >= 2_000, `issued ${issuedTotal}`);
  assert.equal(await count(page, 'issued-total'), issuedTotal, 'the total adds the calls only');
  // The LLM's calls hold whatever the admission select says (a hold is an admission).
  await assertTokensAddUp(page, 'llm-tokens');
  // Every default service passed its limit: the timeline shows each crossing into critical.
  for (const name of ['tiingo', 'finnhub', 'sendgrid']) {
    const critical = page.locator(`[data-testid="transition"][data-service="${name}"][data-to="critical"]`);
    assert.ok((await critical.count()) >= 1, `${name} went critical`);
  }
  assert.equal(await page.getByTestId('level-tiingo').textContent(), 'exhausted');
  assert.deepEqual(page.errors, []);
});

test('a reload continues where it was; reset clears the saved state', async () => {
  // The locked run above is paused, and pausing synced the tracker to localStorage.
  assert.ok((await count(page, 'stats-saves')) >= 1, 'the run synced');
  const names = await serviceNames(page);
  const read = async () => {
    const counts = { calls: await count(page, 'calls') };
    for (const name of names) {
      for (const what of ['used', 'issued', 'denied', 'recorded', 'lost']) {
        // A token service's holds are not saved: after a reload its recorded tokens count as
        // settled and its issued as denied + recorded (checked below).
        if (what === 'issued' && name === 'llm-tokens') continue;
        counts[`${what}-${name}`] = await count(page, `${what}-${name}`);
      }
    }
    return counts;
  };
  const before = await read();
  assert.ok(before.calls >= 2_000, `calls ${before.calls}`);

  await page.reload();
  await page.getByTestId('status').waitFor();
  assert.equal(await page.getByTestId('status').textContent(), 'paused');
  assert.deepEqual(await read(), before, 'every count continues where it was');
  const llm = await assertTokensAddUp(page, 'llm-tokens');
  assert.equal(llm.issued, llm.denied + llm.recorded, 'the LLM\'s issued, restored');
  assert.equal(await page.getByTestId('level-tiingo').textContent(), 'exhausted');

  await page.getByTestId('reset').click();
  assert.equal(await count(page, 'issued-total'), 0);
  assert.equal(await count(page, 'used-tiingo'), 0);
  await page.reload();
  await page.getByTestId('status').waitFor();
  assert.equal(await page.getByTestId('status').textContent(), 'ready', 'reset cleared the saved state');
  assert.equal(await count(page, 'issued-total'), 0);
  for (const name of names) assert.equal(await count(page, `used-${name}`), 0, `${name} starts at 0`);
  assert.deepEqual(page.errors, []);
});

test('store outage: reduced rate after 3 failed syncs, normal again after 5 good ones', async () => {
  const reduced = () => page.getByTestId('reduced-rate').textContent();
  const events = (kind) => page.locator(`[data-testid="store-event"][data-kind="${kind}"]`).count();
  await setInput(page, 'workers', 4);
  await setInput(page, 'rate', 50);
  await page.getByTestId('start').click();
  await waitUntil('a sync', async () => (await count(page, 'stats-saves')) >= 1);
  assert.equal(await reduced(), 'off');

  // The switch is a labelled checkbox: turn it on from the keyboard.
  const outage = page.getByTestId('store-outage');
  await outage.focus();
  await page.keyboard.press('Space');
  assert.ok(await outage.isChecked());
  await waitUntil('reduced rate "on"', async () => (await reduced()) === 'on');
  assert.ok((await count(page, 'stats-save-failures')) >= 3, 'at least 3 failed syncs');
  assert.ok((await count(page, 'stats-consecutive-failures')) >= 3);
  assert.match(await page.getByTestId('stats-last-error').textContent(), /simulated store outage/);
  assert.equal(await events('entered'), 1);
  const savesBefore = await count(page, 'stats-saves');

  await outage.uncheck();
  await waitUntil('reduced rate "off"', async () => (await reduced()) === 'off');
  assert.ok((await count(page, 'stats-saves')) >= savesBefore + 5, 'at least 5 good syncs');
  assert.equal(await events('left'), 1);
  await pauseAndSettle(page);
  assert.equal(await count(page, 'lost-total'), 0, 'the outage loses no recorded call');
  assert.deepEqual(page.errors, []);
});

test('locked mode, try_record (the default): refused calls are denied, no quota is passed', async () => {
  await page.getByTestId('admission').selectOption('try');
  await page.getByTestId('reset').click();
  await setInput(page, 'workers', 8);
  await setInput(page, 'rate', 400);
  await page.getByTestId('start').click();
  await waitUntil('denied > 0', async () => (await count(page, 'denied-total')) > 0);
  await pauseAndSettle(page);
  for (const name of await callServices(page)) {
    const issued = await count(page, `issued-${name}`);
    const denied = await count(page, `denied-${name}`);
    const recorded = await count(page, `recorded-${name}`);
    assert.equal(recorded + denied, issued, `${name}: issued = denied + recorded`);
    assert.equal(await count(page, `lost-${name}`), 0, `${name}: nothing lost`);
    assert.ok(
      (await count(page, `used-${name}`)) <= (await count(page, `limit-${name}`)),
      `${name}: try_record never passes the limit`,
    );
  }
  assert.ok((await count(page, 'denied-total')) > 0);
  assert.deepEqual(page.errors, []);
});

test('tokens: the LLM card shows tokens used and held in flight; the identity holds on every frame and nothing is lost', async () => {
  await page.getByTestId('mode').selectOption('locked');
  await page.getByTestId('admission').selectOption('try');
  await setInput(page, 'workers', 8);
  await setInput(page, 'rate', 40);
  await page.getByTestId('reset').click();
  await page.getByTestId('start').click();
  await waitUntil('tokens held in flight', async () => (await count(page, 'held-llm-tokens')) > 0);
  assert.ok((await count(page, 'used-llm-tokens')) > 0, 'tokens used');
  const holding = await assertTokensAddUpWhileRunning(page, 'llm-tokens', 20);
  assert.ok(holding >= 5, `held in flight on ${holding} of 20 frames`);
  await waitUntil('an LLM call denied', async () => (await count(page, 'denied-llm-tokens')) > 0);
  await pauseAndSettle(page);
  // Paused: every hold settled (the pause waits for them), the counters are final.
  const t = await assertTokensAddUp(page, 'llm-tokens');
  assert.equal(t.inFlight, 0);
  assert.equal(t.held, 0);
  // Below their estimate: given back, or kept where a sync had carried the estimate already.
  assert.ok(t.givenBack + t.kept > 0, 'some settled below their estimate');
  assert.ok(t.added > 0, 'some settled above it');
  assert.ok(t.denied > 0 && t.denied % 2_000 === 0, `denied whole estimates: ${t.denied}`);
  assert.ok(t.issued % 2_000 === 0, `issued whole estimates: ${t.issued}`);
  assert.equal(await page.getByTestId('unit-llm-tokens').textContent(), 'tokens');
  assert.deepEqual(page.errors, []);
});

test('tokens: pause and resume, windows ending mid-hold (60x) and 32 workers: nothing lost, the identity holds', async () => {
  await page.getByTestId('speed').selectOption('60');
  await setInput(page, 'workers', 32);
  await setInput(page, 'rate', 20);
  await page.getByTestId('start').click();
  for (let round = 0; round < 3; round += 1) {
    await assertTokensAddUpWhileRunning(page, 'llm-tokens', 10);
    await pauseAndSettle(page);
    assert.equal((await assertTokensAddUp(page, 'llm-tokens')).inFlight, 0);
    await page.getByTestId('start').click();
  }
  await pauseAndSettle(page);
  const t = await assertTokensAddUp(page, 'llm-tokens');
  // At 60x a minute ends every second of real time: holds of up to 1.2 s span window ends.
  assert.ok(t.settled > 100_000, `settled ${t.settled} tokens: more than one window's limit`);
  await page.getByTestId('speed').selectOption('1');
  assert.deepEqual(page.errors, []);
});

test('tokens: Apply mid-run (a new limit, a new window, the LLM removed, then added back) panics nothing and the identity holds', async () => {
  await setInput(page, 'workers', 8);
  await setInput(page, 'rate', 40);
  await page.getByTestId('reset').click();
  await page.getByTestId('start').click();
  await waitUntil('tokens held in flight', async () => (await count(page, 'held-llm-tokens')) > 0);
  const applied = async (message) => {
    await waitUntil(`"${message}"`, async () => (await page.getByTestId('config-applied').textContent()) !== '');
    assert.equal(await page.getByTestId('config-error').textContent(), '');
    assert.equal(await page.getByTestId('config-applied').textContent(), message);
  };

  await setInput(page, 'config-limit-llm-tokens', 20_000);
  await page.getByTestId('config-apply').click();
  await applied('Applied to the running tracker, counts kept: changed llm-tokens.');
  assert.equal(await count(page, 'limit-llm-tokens'), 20_000);
  await assertTokensAddUpWhileRunning(page, 'llm-tokens', 10);

  // A new window while holds are in flight: their give-backs have no window left to come off
  // (kept), their excess goes to the old window (for the store); nothing is lost.
  await page.getByTestId('config-period-llm-tokens').selectOption('hour');
  await page.getByTestId('config-apply').click();
  await applied('Applied to the running tracker, counts kept: changed llm-tokens.');
  assert.equal(await page.getByTestId('period-llm-tokens').textContent(), 'hour');
  await assertTokensAddUpWhileRunning(page, 'llm-tokens', 10);

  // Removed while its holds are in flight: they settle against a removed service (refused,
  // their counts went with it), and the page goes on.
  await page.getByTestId('config-remove-llm-tokens').click();
  await page.getByTestId('config-apply').click();
  await applied('Applied to the running tracker, counts kept: removed llm-tokens.');
  assert.equal(await page.getByTestId('card-llm-tokens').count(), 0);
  assert.equal(await page.getByTestId('holds-off-llm-tokens').count(), 0);
  await new Promise((r) => setTimeout(r, 1_500));

  await page.getByTestId('config-add').click();
  // Added back, it reads what the store has of its minute, which the earlier holds may have
  // filled: a limit far above it, so that its first holds are admitted.
  for (const [field, value] of [['name', 'llm-tokens'], ['limit', '100000000']]) {
    const input = page.locator(`[data-testid^="config-${field}-new-"]`).last();
    await input.fill(value);
    await input.press('Tab');
  }
  await page.getByTestId('config-apply').click();
  await applied('Applied to the running tracker, counts kept: added llm-tokens.');
  assert.equal(await page.getByTestId('unit-llm-tokens').textContent(), 'tokens');
  await waitUntil('tokens held again', async () => (await count(page, 'held-llm-tokens')) > 0);
  await assertTokensAddUpWhileRunning(page, 'llm-tokens', 10);
  await pauseAndSettle(page);
  const t = await assertTokensAddUp(page, 'llm-tokens');
  assert.equal(t.inFlight, 0);
  assert.ok(t.settled > 0);
  assert.equal(await page.getByTestId('holds-off-llm-tokens').textContent(), '0');
  await page.getByTestId('reset').click();
  assert.deepEqual(page.errors, []);
});

test('instances: delta sync loses nothing, snapshot saves lose calls', async () => {
  const section = page.getByTestId('instances');
  await section.scrollIntoViewIfNeeded();
  const names = await serviceNames(page);
  const run = async (until) => {
    await page.getByTestId('instances-start').click();
    await waitUntil('instances running', until);
    await page.getByTestId('instances-pause').click();
    await waitUntil('instances paused', async () =>
      (await page.getByTestId('instances-status').textContent()) === 'paused');
  };

  await page.getByTestId('instances-mode').selectOption('delta');
  // The footer's calls/s counts the instances' calls too (the simulation is paused here).
  await page.getByTestId('instances-start').click();
  // One reading of the three rates (each is over the last second: the simulation's falls to 0
  // within a second or two of its pause).
  const footer = () => page.evaluate(() => Object.fromEntries(
    ['calls-per-second', 'calls-per-second-simulation', 'calls-per-second-instances']
      .map((id) => [id, Number(document.querySelector(`[data-testid="${id}"]`).textContent)])));
  let rates;
  await waitUntil('the instances alone in the footer', async () => {
    rates = await footer();
    return rates['calls-per-second-simulation'] === 0 && rates['calls-per-second-instances'] >= 300;
  });
  assert.equal(rates['calls-per-second'], rates['calls-per-second-instances'], JSON.stringify(rates));
  // They count every call (record_call): the page says why the stored totals pass the limits.
  await waitUntil('finnhub past its limit', async () => (await count(page, 'instances-stored-finnhub')) > 60);
  assert.match(await page.getByTestId('instances-past-limit').textContent(), /finnhub \d+ of 60.*record_call/);
  await page.getByTestId('instances-pause').click();
  await page.getByTestId('instances-reset').click();
  await run(async () => (await count(page, 'instances-issued-total')) >= 200);
  for (const name of names) {
    const issued = await count(page, `instances-issued-${name}`);
    assert.ok(issued > 0, `${name} got calls`);
    assert.equal(await count(page, `instances-stored-${name}`), issued, `${name}: stored = issued`);
    assert.equal(await count(page, `instances-lost-${name}`), 0, `${name}: nothing lost`);
  }

  await page.getByTestId('instances-mode').selectOption('snapshot');
  assert.equal(await count(page, 'instances-issued-total'), 0, 'a new mode starts over');
  assert.match(await page.getByTestId('instances-notice').textContent(), /Switched to snapshot saves: .*starts from zero/);
  await run(async () => (await count(page, 'instances-lost-total')) > 0);
  let lost = 0;
  for (const name of names) {
    const issued = await count(page, `instances-issued-${name}`);
    const stored = await count(page, `instances-stored-${name}`);
    assert.equal(await count(page, `instances-lost-${name}`), issued - stored, `${name}: lost = issued - stored`);
    lost += issued - stored;
  }
  assert.ok(lost > 0, 'snapshot saves overwrote each other');
  await page.getByTestId('instances-mode').selectOption('delta');
  assert.deepEqual(page.errors, []);
});

test('racy mode: the page shows lost updates', async () => {
  await page.getByTestId('mode').selectOption('racy');
  await setInput(page, 'workers', 8);
  await setInput(page, 'rate', 400);
  assert.ok(await page.getByTestId('store-outage').isDisabled(), 'racy mode has no store');
  assert.equal(await count(page, 'issued-total'), 0, 'switching mode starts over');
  await page.getByTestId('start').click();
  await waitUntil('lost > 0', async () => (await count(page, 'lost-total')) > 0);
  await pauseAndSettle(page);
  let lost = 0;
  for (const name of await callServices(page)) {
    const issued = await count(page, `issued-${name}`);
    const recorded = await count(page, `recorded-${name}`);
    assert.equal(await count(page, `lost-${name}`), issued - recorded, `${name}: lost = issued - recorded`);
    lost += issued - recorded;
  }
  assert.ok(lost > 0, 'racy workers overwrote each other');
  assert.equal(await count(page, 'lost-total'), lost);
  // The LLM's tokens: a racy client holds nothing and counts its estimates the racy way; the
  // identity holds, and lost = settled - recorded.
  const llm = await assertTokensAddUp(page, 'llm-tokens', { lost: 'any' });
  assert.equal(llm.inFlight, 0);
  assert.equal(llm.givenBack + llm.added + llm.denied, 0, 'nothing held, given back or denied');
  assert.equal(llm.settled, llm.issued, 'a racy client counts its estimates');
  assert.equal(llm.lost, llm.settled - llm.recorded);
  assert.deepEqual(page.errors, []);
});

test('usable at 360 px: no horizontal scrolling, a label on every control, keyboard start', async () => {
  const narrow = await browser.newPage({ viewport: { width: 360, height: 740 } });
  await narrow.goto(server.url);
  await narrow.getByTestId('status').waitFor();
  const width = await narrow.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 360, `page is ${width}px wide`);
  const unlabelled = await narrow.evaluate(() =>
    [...document.querySelectorAll('input, select')]
      .filter((control) => control.labels.length === 0)
      .map((control) => control.outerHTML));
  assert.deepEqual(unlabelled, []);
  await narrow.getByTestId('start').focus();
  await narrow.keyboard.press('Enter');
  await waitUntil('running', async () => (await narrow.getByTestId('status').textContent()) === 'running');
  await narrow.keyboard.press('Tab'); // to Pause
  await narrow.keyboard.press('Enter');
  await waitUntil('paused', async () => (await narrow.getByTestId('status').textContent()) === 'paused');
  await narrow.close();
});

test('screenshot of a run in progress (into target/e2e/, git-ignored)', async () => {
  rmSync(TEST_SCREENSHOT, { force: true });
  await takeScreenshot(page, TEST_SCREENSHOT);
  assert.ok(statSync(TEST_SCREENSHOT).size > 10_000, 'a screenshot was written');
  assert.deepEqual(page.errors, []);
});

test('Apply changes the running tracker: counts kept, a removed service loses its card, a time zone shows its local reset', async () => {
  // Last: it leaves the page with a config of its own (the screenshot above uses the defaults).
  await page.getByTestId('mode').selectOption('locked');
  await page.getByTestId('admission').selectOption('count');
  await setInput(page, 'workers', 4);
  await setInput(page, 'rate', 50);
  await page.getByTestId('reset').click();
  await page.getByTestId('start').click();
  await waitUntil('tiingo used >= 20', async () => (await count(page, 'used-tiingo')) >= 20);
  await pauseAndSettle(page);
  // The day's count (the hour's too, unless an hour ended during the run).
  const used = await count(page, 'window-used-2-tiingo');
  const recorded = await count(page, 'recorded-tiingo');
  const applied = () => page.getByTestId('config-applied').textContent();

  // A new limit for the hour: the counts stay, the hour's bar shows the new limit, and the
  // day (1,000) now leaves less headroom than the hour (2,000): it binds.
  await setInput(page, 'config-limit-tiingo', 2_000);
  await page.getByTestId('config-apply').click();
  assert.equal(await page.getByTestId('config-error').textContent(), '');
  assert.equal(await applied(), 'Applied to the running tracker, counts kept: changed tiingo.');
  assert.equal(await count(page, 'window-limit-tiingo'), 2_000);
  assert.equal(await count(page, 'window-limit-2-tiingo'), 1_000, 'the second limit is kept');
  assert.equal(await page.getByTestId('binding-2-tiingo').textContent(), 'binding');
  assert.equal(await count(page, 'limit-tiingo'), 1_000);
  assert.equal(await count(page, 'used-tiingo'), used, 'the used count is kept, not reset to 0');
  assert.equal(await count(page, 'recorded-tiingo'), recorded);
  assert.equal(await count(page, 'remaining-tiingo'), 1_000 - used);

  // A removed service: its card and its counters row go.
  await page.getByTestId('config-remove-sendgrid').click();
  await page.getByTestId('config-apply').click();
  assert.equal(await applied(), 'Applied to the running tracker, counts kept: removed sendgrid.');
  assert.deepEqual(await serviceNames(page), ['tiingo', 'finnhub', 'llm-tokens']);
  assert.equal(await page.getByTestId('card-sendgrid').count(), 0);
  assert.equal(await page.getByTestId('recorded-sendgrid').count(), 0);
  assert.equal(await count(page, 'used-tiingo'), used);

  // A time zone: the card shows the window in words and its local reset time (tiingo's
  // second limit, a day from local midnight in Los Angeles).
  assert.equal(await page.getByTestId('local-reset-2-tiingo').isVisible(), false, 'UTC: no local time');
  await setInput(page, 'config-zone-2-tiingo', 'America/Los_Angeles');
  await page.getByTestId('config-period-finnhub').selectOption('day');
  await setInput(page, 'config-zone-finnhub', 'America/Los_Angeles');
  await page.getByTestId('config-apply').click();
  assert.equal(await page.getByTestId('config-error').textContent(), '');
  assert.equal(await page.getByTestId('period-tiingo').textContent(), 'hour');
  assert.equal(await page.getByTestId('local-reset-tiingo').isVisible(), false, 'a UTC hour');
  assert.equal(await page.getByTestId('period-2-tiingo').textContent(), 'day in America/Los_Angeles');
  assert.equal(await page.getByTestId('local-reset-2-tiingo').textContent(), 'resets 00:00 America/Los_Angeles');
  assert.equal(await page.getByTestId('period-finnhub').textContent(), 'day in America/Los_Angeles');
  assert.equal(await page.getByTestId('local-reset-finnhub').textContent(), 'resets 00:00 America/Los_Angeles');

  // An unknown zone: the core's message, and nothing changes.
  await setInput(page, 'config-zone-finnhub', 'Mars/Olympus_Mons');
  await page.getByTestId('config-apply').click();
  assert.match(await page.getByTestId('config-error').textContent(), /service "finnhub": unknown time zone "Mars\/Olympus_Mons"/);
  assert.equal(await page.getByTestId('local-reset-finnhub').textContent(), 'resets 00:00 America/Los_Angeles');

  await page.getByTestId('config-discard').click();
  await page.locator('.cards').screenshot({ path: join(dirname(TEST_SCREENSHOT), 'cards-in-time-zones.png') });
  assert.deepEqual(page.errors, []);
});
