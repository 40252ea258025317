// Screenshot of one dashboard page (how docs/dashboard-*.png were made):
//   node tests/browser/shot.mjs http://HOST:8080/sweeps/ID out.png [TOKEN] [WAIT_MS]
import { chromium } from 'playwright-core';
const [url, out, token, wait] = process.argv.slice(2);
const b = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless','--no-sandbox','--disable-gpu','--no-first-run','--disable-background-networking','--disable-component-update'] });
const p = await b.newPage({ viewport: { width: 1440, height: 1000 } });
p.on('console', (m) => console.log('console', m.type(), m.text()));
p.on('pageerror', (e) => console.log('pageerror', e.message));
await p.goto(new URL('/', url).href);
if (token) await p.evaluate((t) => localStorage.setItem('sweep.token', t), token);
await p.goto(url);
await p.waitForTimeout(Number(wait || 3000));
await p.screenshot({ path: out, fullPage: true });
await b.close();
