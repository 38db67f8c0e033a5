#!/usr/bin/env node
'use strict';
// demo.js [--minutes N] [--out DIR] [--keep] - the real stack with N minutes
// (default 10) of varied traffic, so that the history sparklines have a
// shape, then full-page screenshots of the dashboard at 1440 and 1000 px
// (dashboard-desktop.png, dashboard-1000px.png) in DIR (default
// t/browser/artifacts/demo). The sidecar keeps its default thresholds.
// With --keep the stack stays up afterwards (Ctrl-C stops it).
//
//   make browser-screenshots     (10 minutes; writes docs/screenshots/)

const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');
const { Stack, sleep } = require('./stack');
const { makeTraffic, wsConnect, slowPost } = require('./traffic');

const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
const MINUTES = Number(opt('--minutes', '10'));
const OUT = path.resolve(opt('--out', path.join(__dirname, 'artifacts', 'demo')));
const KEEP = args.includes('--keep');

// a seeded generator: the same traffic every run
let seed = 42;
const rand = () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

async function main() {
  const stack = await Stack.start();
  const base = await makeTraffic(stack, { slowCount: 0 });
  console.log(`dashboard ${stack.url('/dashboard')}  user ${stack.user}  password ${stack.password}`);
  const ids = Object.values(base.groups);
  const users = ['alice', 'bob', 'carol', 'dave', 'erin'];
  const tokens = users.map((u) => stack.jwt(u));
  const sockets = [];
  const end = Date.now() + MINUTES * 60000;
  const start = Date.now();

  while (Date.now() < end) {
    const minute = Math.floor((Date.now() - start) / 60000);
    const load = 0.5 + 0.5 * Math.sin(minute / 1.7);       // a slow wave
    const incident = minute === Math.floor(MINUTES * 0.6);  // one bad minute
    const n = Math.round(6 + 18 * load);
    const jobs = [];
    for (let i = 0; i < n; i++) {
      const tok = tokens[Math.floor(rand() * tokens.length)];
      const g = ids[Math.floor(rand() * ids.length)];
      const r = rand();
      if (r < 0.45) jobs.push(stack.request('GET', `/api/chat/groups/${g}/messages?limit=20`, { token: tok }));
      else if (r < 0.75) jobs.push(stack.request('POST', `/api/chat/groups/${g}/messages`, { token: tok, body: { content: `m${i}` } }));
      else if (r < 0.9) jobs.push(stack.request('GET', '/api/chat/groups?limit=10', { token: tok }));
      else jobs.push(stack.request('GET', `/api/chat/groups/${g}`, { token: tok }));
      if (rand() < (incident ? 0.25 : 0.02)) {
        jobs.push(stack.request('GET', '/api/chat/groups/5f0000000000000000000000', { token: tok }));
      }
    }
    if (incident && rand() < 0.5) {
      jobs.push(slowPost(stack.port, `/api/chat/groups/${ids[0]}/messages`, tokens[1],
        { content: 'big upload' }, 1100 + Math.floor(rand() * 600), `upload-${Date.now().toString(36)}`));
    }
    // WebSocket clients come and go: between 1 and 6 open
    const want = 1 + Math.round(5 * load);
    if (sockets.length < want) {
      const u = Math.floor(rand() * users.length);
      const g = ids[Math.floor(rand() * ids.length)];
      sockets.push(await wsConnect(stack.port, `/api/chat/ws/${g}?token=${tokens[u]}`));
    } else if (sockets.length > want) {
      await sockets.shift().close();
    }
    await Promise.all(jobs);
    await sleep(3000);
  }

  fs.mkdirSync(OUT, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  for (const [name, width] of [['dashboard-desktop', 1440], ['dashboard-1000px', 1000]]) {
    const ctx = await browser.newContext({ viewport: { width, height: 900 }, httpCredentials: stack.auth, timezoneId: 'UTC' });
    const page = await ctx.newPage();
    await page.goto(stack.url('/dashboard'));
    await page.waitForFunction(() => Number(document.body.dataset.renders || 0) >= 1);
    await page.screenshot({ path: path.join(OUT, `${name}.png`), fullPage: true });
    await ctx.close();
    console.log(path.join(OUT, `${name}.png`));
  }
  await browser.close();

  const stop = async () => {
    await Promise.all(sockets.map((s) => s.close()));
    await base.close();
    await stack.stop();
  };
  if (KEEP) {
    console.log('Ctrl-C stops nginx, the sidecar and the database.');
    process.on('SIGINT', () => stop().then(() => process.exit(0)));
  } else {
    await stop();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
