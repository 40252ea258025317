import { chromium } from 'playwright-core';
const [url, token] = process.argv.slice(2);
const b = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless','--no-sandbox','--disable-gpu','--no-first-run','--disable-background-networking','--disable-component-update'] });
const p = await b.newPage({ viewport: { width: 1440, height: 1000 } });
await p.goto(new URL('/', url).href);
await p.evaluate((t) => localStorage.setItem('sweep.token', t), token);
await p.goto(url);
await p.locator('#leaderboard tbody tr').first().waitFor();
const cdp = await p.context().newCDPSession(p);
await cdp.send('Profiler.enable');
await cdp.send('Profiler.start');
await p.waitForTimeout(8000);
const { profile } = await cdp.send('Profiler.stop');
const self = new Map();
const dt = profile.timeDeltas; const samples = profile.samples;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
for (let i = 0; i < samples.length; i++) {
  const n = byId.get(samples[i]); const k = `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.split('/').pop()}:${n.callFrame.lineNumber}`;
  self.set(k, (self.get(k) || 0) + (dt[i] || 0));
}
const tot = [...self.values()].reduce((a, b) => a + b, 0);
for (const [k, v] of [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 18)) console.log((v / 1000).toFixed(0).padStart(6), 'ms', k);
console.log('total', (tot/1000).toFixed(0));
await b.close();
