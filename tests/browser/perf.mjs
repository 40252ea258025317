// How busy the sweep page keeps a browser (how docs/BENCHMARKS.md's dashboard figures were made):
//   node tests/browser/perf.mjs http://HOST:8080/sweeps/ID [TOKEN]
// Prints the time from opening the page to the first leaderboard row, then the share of the
// page's main thread spent on tasks over the next 10 s (CDP Performance.getMetrics TaskDuration).
import { chromium } from 'playwright-core';

const [url, token] = process.argv.slice(2);
const b = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--disable-background-networking', '--disable-component-update'],
});
const p = await b.newPage({ viewport: { width: 1440, height: 1000 } });
p.on('pageerror', (e) => console.log('page error:', e.message));
await p.goto(new URL('/', url).href);
if (token) await p.evaluate((t) => localStorage.setItem('sweep.token', t), token);
const t0 = Date.now();
await p.goto(url);
await p.locator('#leaderboard tbody tr').first().waitFor();
console.log(`leaderboard shown after ${Date.now() - t0} ms`);
const cdp = await p.context().newCDPSession(p);
await cdp.send('Performance.enable');
const metrics = async () => Object.fromEntries(
  (await cdp.send('Performance.getMetrics')).metrics.map((x) => [x.name, x.value]));
const a = await metrics();
await p.waitForTimeout(10000);
const z = await metrics();
console.log(`main thread busy ${(((z.TaskDuration - a.TaskDuration) / 10) * 100).toFixed(1)}% over 10 s`);
console.log(`trials done: ${await p.locator('.card .v').nth(1).textContent()}`);
await b.close();
