// Drives headless Debian chromium through the dashboard of a running coordinator.
// Run by tests/tests/dashboard.rs, which starts the coordinator, the sweep and the workers:
//
//   node tests/browser/dashboard.mjs BASE_URL SWEEP_ID TOKEN STEP_DIR [SCREENSHOT_DIR]
//
// The sweep is paused when this starts and has no trials. The steps, each waited for:
//  1. `/` asks for the token; nothing about the sweep is on the page before it is given;
//  2. the sweep's row appears; open it; it shows no trials; click Resume;
//  3. leaderboard rows appear and the learning curves grow as epochs arrive;
//  4. the coordinator is killed (STEP_DIR/kill asks the test to; STEP_DIR/restarted says it
//     is back): the page shows the connection is lost, then live again, and the curves grow;
//  5. a download of leaderboard.csv carries the token and holds every row;
//  6. click Pause: the state on the page becomes paused; a range dragged on the parallel
//     coordinates' metric axis keeps only the trials in it;
//  7. a trial's page shows its params, its curves and its state.
// Exits 0 when every step passed; otherwise prints the failed step and exits 1.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';

const [base, sweepId, token, stepDir, shots] = process.argv.slice(2);
if (!stepDir) {
  console.error('usage: dashboard.mjs BASE_URL SWEEP_ID TOKEN STEP_DIR [SCREENSHOT_DIR]');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const T = 60000;
let step = 'launch';
const log = (m) => console.log(`[browser] ${m}`);
const begin = (s) => { step = s; log(s); };

const browser = await chromium.launch({
  executablePath,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--disable-quic'],
});
const failures = [];
try {
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 }, acceptDownloads: true });
  const page = await context.newPage();
  page.on('pageerror', (e) => failures.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') log(`console: ${m.text()}`); });
  // Nothing may be fetched from anywhere but the coordinator.
  page.on('request', (r) => {
    if (!r.url().startsWith(base) && !r.url().startsWith('blob:') && !r.url().startsWith('data:')) {
      failures.push(`request to ${r.url()}`);
    }
  });

  begin('1. / asks for the token');
  await page.goto(`${base}/`);
  await page.locator('#token-dialog[open]').waitFor({ timeout: T });
  if ((await page.content()).includes(sweepId)) throw new Error('the sweep id is on the page before the token');
  await page.fill('#token-input', 'wrong-token');
  await page.press('#token-input', 'Enter');
  await page.locator('#token-error:not(.hidden)').waitFor({ timeout: T });
  if ((await page.content()).includes(sweepId)) throw new Error('the sweep id is on the page after a wrong token');
  await page.fill('#token-input', token);
  await page.press('#token-input', 'Enter');

  begin('2. the sweep is listed; open it; resume');
  const row = page.locator(`#sweeps tr[data-sweep="${sweepId}"]`);
  await row.waitFor({ timeout: T });
  await row.locator('.state[data-state="paused"]').waitFor({ timeout: T });
  await row.locator('a').first().click();
  await page.waitForURL(`**/sweeps/${sweepId}`);
  await page.locator('#resume:not([disabled])').waitFor({ timeout: T });
  if (await page.locator('#leaderboard tbody tr').count() !== 0) throw new Error('trials before resume');
  await page.click('#resume');
  await page.locator('.card[data-state="running"]').waitFor({ timeout: T });

  begin('3. leaderboard rows appear and the curves grow');
  await page.waitForFunction(() => document.querySelectorAll('#leaderboard tbody tr').length >= 2, null, { timeout: T });
  await page.waitForFunction(() => Number(document.getElementById('curves').dataset.points || 0) > 0, null, { timeout: T });
  // A running trial's curve (the metric's panel) followed until it has more points; if it ends
  // or leaves the chart first, another running trial is followed.
  const growing = async () => {
    await page.evaluate(() => { window.followed = {}; });
    const h = await page.waitForFunction(() => {
      const w = window.followed;
      const paths = [...document.querySelectorAll('#curves .chart:first-child path[data-trial]')];
      if (w.trial) {
        const p = paths.find((x) => x.dataset.trial === w.trial);
        if (p && Number(p.dataset.n) > w.n) return `trial ${w.trial}'s curve grew from ${w.n} to ${p.dataset.n} points`;
        // Still running: wait. Ended (its last epoch may have come before it was followed) or
        // gone from the chart: follow another.
        if (p && p.dataset.running === 'true') return false;
      }
      const run = paths.filter((x) => x.dataset.running === 'true')
        .sort((x, y) => Number(x.dataset.n) - Number(y.dataset.n))[0];
      if (run) {
        w.trial = run.dataset.trial;
        w.n = Number(run.dataset.n);
      }
      return false;
    }, null, { timeout: T });
    log(await h.jsonValue());
  };
  await growing();
  if (await page.locator('#conn[data-state="live"]').count() !== 1) throw new Error('not shown as live');

  begin('4. the coordinator dies and comes back');
  fs.writeFileSync(path.join(stepDir, 'kill'), '');
  await page.locator('#lost:not(.hidden)').waitFor({ timeout: T });
  await page.locator('#conn[data-state="lost"]').waitFor({ timeout: T });
  log('shown as lost');
  const deadline = Date.now() + T;
  while (!fs.existsSync(path.join(stepDir, 'restarted'))) {
    if (Date.now() > deadline) throw new Error('the test never restarted the coordinator');
    await new Promise((r) => setTimeout(r, 100));
  }
  await page.locator('#conn[data-state="live"]').waitFor({ timeout: T });
  await page.locator('#lost.hidden').waitFor({ state: 'attached', timeout: T });
  log('live again');
  await growing();

  begin('5. leaderboard.csv downloads with the token');
  const [dl] = await Promise.all([
    page.waitForEvent('download', { timeout: T }),
    page.click('a[data-download$="leaderboard.csv"]'),
  ]);
  const csv = fs.readFileSync(await dl.path(), 'utf8');
  if (!csv.startsWith('rank,trial,state')) throw new Error(`leaderboard.csv starts ${JSON.stringify(csv.slice(0, 40))}`);
  log(`leaderboard.csv: ${csv.trim().split('\n').length - 1} rows`);

  begin('6. pause');
  if (shots) await page.screenshot({ path: path.join(shots, 'dashboard-sweep.png'), fullPage: true });
  await page.click('#pause');
  await page.locator('.card[data-state="paused"]').waitFor({ timeout: T });
  await page.locator('#resume:not([disabled])').waitFor({ timeout: T });
  await page.locator('#pause[disabled]').waitFor({ timeout: T });

  begin('6b. parallel coordinates: a range dragged on the metric axis keeps only its trials');
  const axis = page.locator('#parallel g.axis').last().locator('rect.hit');
  await axis.waitFor({ timeout: T });
  // The paused sweep's running trials still finish: wait for a second ranked trial (a slow
  // machine may have ranked only one by now) rather than assume how many are done.
  await page.waitForFunction(() => document.querySelectorAll('#parallel path[data-trial]').length >= 2,
    null, { timeout: 4 * T })
    .catch(async () => {
      const n = await page.locator('#parallel path[data-trial]').count();
      throw new Error(`parallel coordinates still draw ${n} trials`);
    });
  // Trials of the paused sweep still finish and redraw the chart: a redraw between finding
  // the axis and releasing the mouse loses the drag, so drag again until one lands.
  let total, kept, dimmed;
  for (let attempt = 1; ; attempt++) {
    total = await page.locator('#parallel path[data-trial]').count();
    await axis.scrollIntoViewIfNeeded().catch(() => {});
    const box = await axis.boundingBox();
    if (box) {
      await page.mouse.move(box.x + box.width / 2, box.y + 1); // from just above the top: t = 1
      await page.mouse.down();
      await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2, { steps: 5 });
      await page.mouse.up();
      kept = Number(await page.locator('#parallel').getAttribute('data-kept'));
      dimmed = await page.locator('#parallel path.dim').count();
      total = await page.locator('#parallel path[data-trial]').count();
      if (kept >= 1 && kept < total && kept + dimmed === total) break;
    }
    if (attempt === 10) throw new Error(`after ${attempt} drags: ${kept} kept, ${dimmed} dimmed of ${total}`);
    await page.waitForTimeout(200);
  }
  log(`brushed the upper half of the metric: ${kept} of ${total} trials kept`);
  await axis.click();
  await page.waitForFunction(() => document.querySelectorAll('#parallel path.dim').length === 0, null, { timeout: T });

  begin('7. a trial page');
  const first = await page.locator('#leaderboard tbody tr').first().getAttribute('data-trial');
  await page.click(`#leaderboard tbody tr[data-trial="${first}"] td:first-child`);
  await page.waitForURL(`**/sweeps/${sweepId}/trials/${first}`);
  await page.locator('#facts .state').waitFor({ timeout: T });
  await page.locator('#params tr').first().waitFor({ timeout: T });
  await page.waitForFunction(() => Number(document.getElementById('curves').dataset.points || 0) > 0, null, { timeout: T });
  if (shots) await page.screenshot({ path: path.join(shots, 'dashboard-trial.png'), fullPage: true });
  if (shots) {
    await page.goto(`${base}/`);
    await page.locator(`#sweeps tr[data-sweep="${sweepId}"]`).waitFor({ timeout: T });
    await page.screenshot({ path: path.join(shots, 'dashboard-sweeps.png'), fullPage: true });
  }
  if (failures.length) throw new Error(failures.join('; '));
  log('every step passed');
} catch (e) {
  console.error(`[browser] FAILED at step ${step}: ${e.message}`);
  if (shots) {
    try {
      const pages = browser.contexts().flatMap((c) => c.pages());
      if (pages[0]) await pages[0].screenshot({ path: path.join(shots, 'failure.png'), fullPage: true });
    } catch (_) { /* best effort */ }
  }
  await browser.close();
  process.exit(1);
}
await browser.close();
