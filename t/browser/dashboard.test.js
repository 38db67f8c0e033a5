'use strict';
// Browser tests of html/dashboard.html: Debian's chromium driven by
// playwright-core against the real stack (nginx + ngx_chat_module +
// chat-sidecar + FerretDB) started here, after real traffic.
//
//   node --test t/browser/          (or: make browser-test)
//
// CHROMIUM=/path/to/chromium overrides the browser. Screenshots go to
// t/browser/artifacts/ (also one per failed test).

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');

const { Stack, ROOT, sleep } = require('./stack');
const { makeTraffic, XSS_NAME, BIDI_NAME, BIDI_USER } = require('./traffic');
const cspHash = require('./csp-hash');

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = path.join(__dirname, 'artifacts');
const PAGE_FILE = path.join(ROOT, 'html', 'dashboard.html');
const SLOW_MS = 100;
const VERY_SLOW_MS = 250;
const COLORS = {
  ok: 'rgb(0, 255, 0)', warning: 'rgb(255, 170, 0)', error: 'rgb(255, 0, 0)',
  bg: 'rgb(10, 10, 10)', hi: 'rgb(0, 255, 255)', off: 'rgba(0, 255, 0, 0.62)',
};

let stack;
let traffic;
let browser;
const contexts = new Set();
const dialogs = [];          // any alert() anywhere fails the XSS test

// --- helpers -------------------------------------------------------------------

const isApi = (u) => new URL(u).pathname === '/dashboard/api/data';

// watch a page: errors, dialogs, CSP violations, every request it makes
function watch(page) {
  const w = { errors: [], requests: [], apiRequests: [] };
  page.on('pageerror', (e) => w.errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') w.errors.push(`console: ${m.text()}`); });
  page.on('dialog', async (d) => { dialogs.push(d.message()); await d.dismiss(); });
  page.on('request', (r) => {
    w.requests.push(r.url());
    if (isApi(r.url())) w.apiRequests.push(Date.now());
  });
  return w;
}

async function newPage({ viewport = { width: 1440, height: 900 }, credentials = true, permissions,
  timezoneId = 'UTC' } = {}) {
  const ctx = await browser.newContext({
    viewport,
    timezoneId,
    locale: 'en-US',
    httpCredentials: credentials ? stack.auth : undefined,
    permissions,
  });
  contexts.add(ctx);
  const page = await ctx.newPage();
  // record CSP violations and the countdown's texts from the very start
  await page.addInitScript(() => {
    window.__csp = [];
    window.__countdown = [];
    document.addEventListener('securitypolicyviolation',
      (e) => window.__csp.push(`${e.effectiveDirective} ${e.blockedURI}`));
    document.addEventListener('DOMContentLoaded', () => {
      const cd = document.getElementById('countdown');
      if (!cd) return;
      new MutationObserver(() => window.__countdown.push([Date.now(), cd.textContent]))
        .observe(cd, { childList: true, characterData: true, subtree: true });
    });
  });
  return { ctx, page, w: watch(page) };
}

const renders = (page) => page.evaluate(() => Number(document.body.dataset.renders || 0));
const failures = (page) => page.evaluate(() => Number(document.body.dataset.failures || 0));

// open the dashboard; resolves with the API answer the page rendered
async function openDashboard(query = '', opts = {}) {
  const p = await newPage(opts);
  const answer = p.page.waitForResponse((r) => isApi(r.url()));
  p.nav = await p.page.goto(stack.url(`/dashboard${query}`));
  assert.equal(p.nav.status(), 200, 'GET /dashboard');
  const res = await answer;
  p.data = res.status() === 200 ? await res.json() : null;
  await p.page.waitForFunction(() => Number(document.body.dataset.renders || 0) >= 1
    || document.body.dataset.state === 'error');
  return p;
}

// click "refresh now" and wait for the page to have rendered the answer
async function refreshNow(page) {
  const n = await renders(page);
  const answer = page.waitForResponse((r) => isApi(r.url()));
  await page.click('#refresh-now');
  const res = await answer;
  const data = res.status() === 200 ? await res.json().catch(() => null) : null;
  await page.waitForFunction((k) => Number(document.body.dataset.renders || 0) > k
    || document.body.dataset.state === 'error', n);
  return data;
}

// the bidirectional controls (Unicode's Bidi_Control set): the page shows
// each as a visible marker, never applies it
const BIDI_RE = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/g;
const shown = (s) => s.replace(BIDI_RE, (c) => `⟨U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, '0')}⟩`);

// a date-time without a zone is UTC (the API's times are all UTC)
const utcDate = (x) => {
  if (typeof x !== 'string') return null;
  const z = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(x) ? `${x.replace(' ', 'T')}Z` : x;
  return Number.isNaN(Date.parse(z)) ? null : new Date(z).toISOString();
};

// the display contract: how each kind of value is shown
function expectedText(kind, v, labels) {
  const num = (x) => typeof x === 'number' && Number.isFinite(x);
  const date = utcDate;
  switch (kind) {
    case 'int': return num(v) ? Math.round(v).toLocaleString('en-US') : 'N/A';
    case 'num': return num(v) ? v.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 }) : 'N/A';
    case 'str': return typeof v === 'string' && v !== '' ? shown(v) : num(v) ? String(v) : 'N/A';
    case 'datetime': return date(v) ? `${date(v).slice(0, 19).replace('T', ' ')} UTC` : 'N/A';
    case 'time': return date(v) ? date(v).slice(11, 23) : 'N/A';
    case 'list': return Array.isArray(v) ? v.filter((s) => typeof s === 'string' && s !== '').map(shown).join(', ') || 'none' : 'N/A';
    case 'bool': { const [y, n] = (labels || 'yes|no').split('|'); return typeof v === 'boolean' ? (v ? y : n) : 'N/A'; }
    case 'dur': {
      if (!num(v) || v < 0) return 'N/A';
      let s = Math.floor(v);
      const d = Math.floor(s / 86400); s %= 86400;
      const h = Math.floor(s / 3600); s %= 3600;
      const m = Math.floor(s / 60); s %= 60;
      return `${d ? `${d}d ` : ''}${d || h ? `${h}h ` : ''}${m}m ${s}s`;
    }
    default: throw new Error(`unknown kind ${kind}`);
  }
}

const get = (o, p) => p.split('.').reduce((x, k) => (x !== null && typeof x === 'object' ? x[k] : undefined), o);

async function fields(page) {
  return page.$$eval('[data-field]', (els) => els.map((e) => ({
    field: e.dataset.field, kind: e.dataset.kind, labels: e.dataset.labels,
    status: e.dataset.status, text: e.textContent, classes: [...e.classList],
    color: getComputedStyle(e).color,
  })));
}

const statusOf = (f) => (f.classes.find((c) => c.startsWith('status-')) || '').replace('status-', '') || null;

async function tableRows(page, sel) {
  return page.$$eval(`${sel} tbody tr`, (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
}

const newestFirst = (rows) => rows.map((r, i) => [r, i])
  .sort((a, b) => (a[0].timestamp < b[0].timestamp ? 1 : a[0].timestamp > b[0].timestamp ? -1 : b[1] - a[1]))
  .map((x) => x[0]);

async function shot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

// run a test body with a page; on failure keep a screenshot of it
function withPages(name, fn) {
  return async (t) => {
    const opened = [];
    const open = async (...a) => { const p = await openDashboard(...a); opened.push(p); return p; };
    try {
      await fn(t, open);
    } catch (e) {
      for (const [i, p] of opened.entries()) {
        await shot(p.page, `failed-${name}${i ? `-${i}` : ''}`).catch(() => {});
      }
      throw e;
    } finally {
      for (const p of opened) { contexts.delete(p.ctx); await p.ctx.close().catch(() => {}); }
    }
  };
}

// --- the stack and the browser --------------------------------------------------

before(async () => {
  fs.rmSync(ARTIFACTS, { recursive: true, force: true });
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} not found: apt-get install chromium`);
  const launching = chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  let err = null;
  try {
    stack = await Stack.start({ sidecarArgs: ['--slow-ms', String(SLOW_MS), '--very-slow-ms', String(VERY_SLOW_MS)] });
    traffic = await makeTraffic(stack, { slowMs: SLOW_MS, verySlowMs: VERY_SLOW_MS });
    // wait until the sidecar has it all, the database figures included
    const done = Date.now();
    const end = done + 10000;
    for (;;) {
      const d = (await stack.request('GET', '/dashboard/api/data', { auth: true })).json;
      if (d.websockets.total_active_connections === 2
          && d.performance.slow_requests_count >= traffic.slowCids.length
          && d.performance.very_slow_requests_count >= 1
          && Date.parse(d.database.refreshed_at) > done) break;
      if (Date.now() > end) throw new Error(`the traffic did not show up in the sidecar's data: ${JSON.stringify(d)}`);
      await sleep(100);
    }
  } catch (e) {
    err = e;
  }
  browser = await launching;          // closed by after() in any case
  if (err) throw err;
});

after(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  if (browser) await browser.close().catch(() => {});
  if (traffic) await traffic.close().catch(() => {});
  if (stack) await stack.stop();
});

// --- tests ---------------------------------------------------------------------------

test('the page source: no HTML from data, no external resource, CSP hashes current', () => {
  const html = fs.readFileSync(PAGE_FILE, 'utf8');
  const script = html.match(/<script>([\s\S]*?)<\/script>/)[1];
  for (const bad of ['innerHTML', 'outerHTML', 'insertAdjacentHTML', 'document.write', 'eval(',
    'new Function', "setAttribute('style'", 'setAttribute("style"']) {
    assert.ok(!script.includes(bad), `the script uses ${bad}`);
  }
  // the only URL is the SVG namespace; no src/href but data:, no @import or url()
  const urls = html.match(/(https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}[^\s'"]*/gi) || [];
  assert.deepEqual([...new Set(urls)], ['http://www.w3.org/2000/svg'], 'external URLs');
  for (const m of html.matchAll(/\s(?:src|href)="([^"]*)"/g)) assert.match(m[1], /^data:/, `resource ${m[1]}`);
  assert.ok(!/@import|url\(/.test(html), 'no @import or url() in the CSS');
  const r = cspHash.check(html);
  assert.ok(r.ok, `CSP meta hashes are stale (have ${JSON.stringify(r.have)}, want ${JSON.stringify(r.want)}): make dashboard-csp`);
});

test('the page is behind basic auth and carries a strict CSP', async () => {
  // no credentials, wrong credentials: 401 for the page and the JSON
  for (const p of ['/dashboard', '/dashboard/api/data']) {
    const none = await stack.request('GET', p);
    assert.equal(none.status, 401, `${p} without credentials`);
    assert.ok(!none.body.includes('status-bar') && !none.body.includes('"performance"'), `${p}: nothing leaks`);
    const wrong = await stack.request('GET', p, {
      headers: { authorization: `Basic ${Buffer.from('admin:wrong').toString('base64')}` } });
    assert.equal(wrong.status, 401, `${p} with a wrong password`);
  }
  const { ctx, page } = await newPage({ credentials: false });
  const challenged = page.waitForResponse((r) => new URL(r.url()).pathname === '/dashboard');
  // headless chromium gives up on the challenge: net::ERR_INVALID_AUTH_CREDENTIALS
  await page.goto(stack.url('/dashboard')).catch(() => {});
  const res = await challenged;
  assert.equal(res.status(), 401, 'the browser without credentials gets 401');
  assert.match(res.headers()['www-authenticate'] || '', /^Basic realm="Dashboard"/);
  contexts.delete(ctx);
  await ctx.close();

  // with them: the page, and the sidecar's CSP header on it
  const ok = await stack.request('GET', '/dashboard', { auth: true });
  assert.equal(ok.status, 200);
  assert.match(ok.headers.get('content-type'), /^text\/html/);
  const csp = ok.headers.get('content-security-policy');
  assert.ok(csp, 'Content-Security-Policy header');
  for (const d of ["default-src 'none'", "connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"]) {
    assert.ok(csp.includes(d), `header has ${d}: ${csp}`);
  }
  // and the page's own policy: scripts and styles by hash only
  const meta = ok.body.match(/<meta http-equiv="Content-Security-Policy" content="([^"]*)"/)[1];
  assert.match(meta, /default-src 'none'/);
  assert.match(meta, /script-src 'sha256-[A-Za-z0-9+/=]+';/);
  assert.match(meta, /style-src 'sha256-[A-Za-z0-9+/=]+';/);
  assert.ok(!/unsafe-inline|unsafe-eval/.test(meta), 'no unsafe-* in the page policy');
});

let live;            // the page opened with the default interval, kept open

test('every panel shows the live values that /dashboard/api/data returned', async (t) => {
  live = await openDashboard();
  contexts.delete(live.ctx);          // closed by the default-interval test
  const { page, data, w } = live;
  await page.waitForFunction(() => document.body.dataset.state === 'ok');

  // the traffic is there (the preconditions of the other checks)
  assert.ok(data.database.total_groups >= 4, 'groups');
  assert.ok(data.database.top_active_groups.some((g) => g.group_name === XSS_NAME), 'XSS group among the top');
  assert.equal(data.websockets.total_active_connections, 2, 'two open WebSockets');
  assert.ok(data.performance.slow_requests_count > 10, 'more than 10 slow requests');
  assert.ok(data.performance.very_slow_requests_count >= 1, 'a very slow request');
  assert.ok(data.performance.error_rate_percent > 5, 'error rate over 5 %');
  assert.ok(data.history.length >= 1, 'history rows');

  // every bound value, formatted as the display contract says
  const fs_ = await fields(page);
  assert.ok(fs_.length >= 50, `bound values: ${fs_.length}`);
  for (const f of fs_) {
    assert.equal(f.text, expectedText(f.kind, get(data, f.field), f.labels), `${f.field} (${f.kind})`);
  }
  const seen = new Set(fs_.map((f) => f.field));
  for (const k of ['timestamp', 'system.mongodb_status', 'system.resources.process_memory_mb',
    'database.total_messages', 'database.last_24h.new_messages', 'websockets.total_active_connections',
    'performance.requests_per_minute', 'performance.p95_response_time_ms', 'performance.very_slow_requests_count']) {
    assert.ok(seen.has(k), `${k} is shown`);
  }
  assert.equal(await page.textContent('#data-time'), expectedText('datetime', data.timestamp), 'header timestamp');

  // Top Active Groups
  const groups = await tableRows(page, '#tbl-groups');
  const live_ = new Map(data.websockets.connections_per_group.map((c) => [c.group_id, c.connection_count]));
  assert.deepEqual(groups, data.database.top_active_groups.map((g, i) => [
    String(i + 1), shown(g.group_name), g.group_id, expectedText('int', g.message_count),
    expectedText('int', live_.get(g.group_id) || 0), expectedText('datetime', g.last_message)]));

  // Endpoint Statistics, with p95
  const eps = await tableRows(page, '#tbl-endpoints');
  assert.deepEqual(eps, data.endpoints.map((e) => [e.endpoint, expectedText('int', e.request_count),
    expectedText('int', e.error_count), expectedText('num', e.error_rate_percent),
    expectedText('num', e.avg_response_time_ms), expectedText('num', e.p95_response_time_ms)]));
  assert.ok(data.endpoints.every((e) => typeof e.p95_response_time_ms === 'number'), 'p95 per endpoint');

  // WebSocket connections per group
  const names = new Map(data.database.top_active_groups.map((g) => [g.group_id, g.group_name]));
  assert.deepEqual(await tableRows(page, '#tbl-ws-groups'), data.websockets.connections_per_group
    .map((c) => [shown(names.get(c.group_id) || ''), c.group_id, expectedText('int', c.connection_count)]));

  // the logs, newest first
  const req = (r) => [expectedText('time', r.timestamp), r.method, r.endpoint,
    expectedText('int', r.status_code), expectedText('num', r.duration_ms), r.correlation_id];
  assert.deepEqual(await tableRows(page, '#log-slow'), newestFirst(data.performance.recent_slow_requests)
    .map((r) => [...req(r), r.very_slow ? 'VERY SLOW' : 'slow']));
  assert.deepEqual(await tableRows(page, '#log-errors'), newestFirst(data.recent_activity.recent_errors).map(req));
  assert.deepEqual(await tableRows(page, '#log-ws'), newestFirst(data.websockets.recent_events).map((e) => [
    expectedText('time', e.timestamp), e.event_type, shown(names.get(e.group_id) || ''), e.group_id, shown(e.user_id),
    expectedText('int', e.connection_count)]));
  // the JSON lists the last 10 slow requests: the very slow upload came last
  const listed = data.performance.recent_slow_requests;
  assert.equal(listed.length, Math.min(10, data.performance.slow_requests_count), 'the last 10 slow requests');
  assert.ok(listed.filter((r) => traffic.slowCids.includes(r.correlation_id)).length >= 5, 'our slow uploads');
  assert.ok(listed.some((r) => r.correlation_id === 'upload-very-slow' && r.very_slow === true), 'the very slow one');

  // the history sparklines: one point per minute with a value, the last value
  const hist = data.history;
  const series = {
    requests: hist.map((m) => m.requests),
    error_rate: hist.map((m) => (m.requests > 0 ? (100 * m.errors) / m.requests : null)),
    avg: hist.map((m) => (m.requests > 0 ? m.avg_response_time_ms : null)),
    p95: hist.map((m) => (m.requests > 0 ? m.p95_response_time_ms : null)),
    ws: hist.map((m) => m.ws_connections),
  };
  const kinds = { requests: 'int', error_rate: 'num', avg: 'num', p95: 'num', ws: 'int' };
  for (const [key, vals] of Object.entries(series)) {
    const known = vals.filter((v) => typeof v === 'number');
    const svg = await page.$(`svg[data-series="${key}"]`);
    assert.ok(svg, `sparkline ${key}`);
    assert.equal(await svg.getAttribute('data-points'), String(known.length), `${key}: points`);
    assert.ok(await svg.$('polyline'), `${key}: a line`);
    assert.equal(await page.textContent(`b[data-last="${key}"]`),
      expectedText(kinds[key], known.length ? known[known.length - 1] : null), `${key}: last value`);
  }

  // offline by construction: only the page and its JSON were requested
  const origin = new URL(stack.url('/')).origin;
  for (const u of w.requests) {
    assert.equal(new URL(u).origin, origin, `request to ${u}`);
    assert.ok(['/dashboard', '/dashboard/api/data'].includes(new URL(u).pathname), `request to ${u}`);
  }
  assert.deepEqual(w.errors, [], 'no page errors');
  assert.deepEqual(await page.evaluate(() => window.__csp), [], 'no CSP violation');
  const font = await page.evaluate(() => getComputedStyle(document.body).fontFamily);
  assert.match(font, /monospace/, 'monospace');
  t.diagnostic(`${fs_.length} bound values, ${eps.length} endpoints, ${hist.length} history rows`);
});

test('live thresholds: error rate, slow and very slow requests colour the figures', async () => {
  const { page, data } = live;
  const f = await fields(page);
  const bar = (field) => f.find((x) => x.field === field && x.classes.includes('v'));
  const check = (field, level) => {
    const e = bar(field);
    assert.equal(statusOf(e), level, `${field} is status-${level}`);
    assert.equal(e.color, COLORS[level], `${field} colour`);
  };
  check('performance.error_rate_percent', 'warning');
  check('performance.slow_requests_count', 'warning');
  check('performance.very_slow_requests_count', 'error');
  check('system.mongodb_healthy', 'ok');
  check('system.api_status', 'ok');
  check('performance.average_response_time_ms', data.performance.average_response_time_ms > 500 ? 'warning' : 'ok');
  // the endpoint that only answered 404s
  const rows = await page.$$eval('#tbl-endpoints tbody tr', (trs) => trs.map((tr) => ({
    name: tr.cells[0].textContent, rate: [...tr.cells[3].classList], color: getComputedStyle(tr.cells[3]).color })));
  const r404 = rows.find((r) => r.name === 'GET /api/chat/groups/{group_id}');
  assert.ok(r404.rate.includes('status-warning'), 'endpoint error rate warning');
  assert.equal(r404.color, COLORS.warning);
  // the very slow request's log row is red (found by its correlation ID:
  // on a busy machine the page's own polls may be slow rows above it)
  const flag = await page.$$eval('#log-slow tbody tr', (trs) => trs
    .filter((tr) => tr.cells[5].textContent === 'upload-very-slow')
    .map((tr) => [tr.cells[6].textContent, getComputedStyle(tr.cells[6]).color]));
  assert.deepEqual(flag, [['VERY SLOW', COLORS.error]]);
  // the terminal colours
  const colors = await page.evaluate(() => ({
    bg: getComputedStyle(document.body).backgroundColor,
    fg: getComputedStyle(document.body).color,
    title: getComputedStyle(document.querySelector('h1')).color,
    border: getComputedStyle(document.querySelector('.panel')).borderTopColor,
  }));
  assert.deepEqual(colors, { bg: COLORS.bg, fg: COLORS.ok, title: COLORS.hi, border: 'rgb(51, 51, 51)' });
});

test('the XSS group name renders as text', async () => {
  const { page } = live;
  const cells = await page.$$eval('#tbl-groups tbody tr', (trs) => trs.map((tr) => tr.cells[1].textContent));
  assert.ok(cells.includes(XSS_NAME), 'shown literally');
  assert.equal(await page.$$eval('img', (x) => x.length), 0, 'no <img> element');
  assert.equal(await page.evaluate(() => document.querySelector('#tbl-groups').innerHTML.includes('<img')), false);
  assert.deepEqual(dialogs, [], 'no alert()');
});

test('layout: 2 columns on a desktop, 1 under 1200 px, tables scroll sideways on a phone; screenshots', withPages('layout', async (t, open) => {
  const boxes = (page) => page.$$eval('.grid > .panel', (ps) => ps.map((p) => {
    const r = p.getBoundingClientRect();
    return { id: p.id, x: Math.round(r.x), y: Math.round(r.y), w: Math.round(r.width) };
  }));
  const overflow = (page) => page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  // the sparklines one under the other, none on top of another, each wide enough
  const sparks = async (page, label) => {
    const r = await page.$$eval('#sparklines svg', (ss) => ss.map((x) => {
      const b = x.getBoundingClientRect();
      return { top: b.top, bottom: b.bottom, w: b.width };
    }));
    assert.equal(r.length, 5, `${label}: 5 sparklines`);
    for (let i = 1; i < r.length; i++) assert.ok(r[i].top >= r[i - 1].bottom, `${label}: sparkline ${i} below ${i - 1}`);
    assert.ok(r.every((x) => x.w >= 200), `${label}: sparklines ${r.map((x) => Math.round(x.w))} px wide`);
  };

  // desktop
  const { page: desk } = live;
  let b = await boxes(desk);
  assert.deepEqual(b.map((x) => x.id), ['panel-system', 'panel-database', 'panel-websocket', 'panel-performance']);
  assert.equal(b[0].y, b[1].y, 'System and Database side by side');
  assert.ok(b[1].x > b[0].x && b[2].y > b[0].y && b[2].x === b[0].x, 'two columns');
  assert.ok(b.every((x) => x.w >= 500), `panels at least 500 px: ${b.map((x) => x.w)}`);
  assert.equal(await overflow(desk), 0, 'no sideways scrolling');
  await sparks(desk, 'desktop');
  const f1 = await shot(desk, 'dashboard-desktop');

  // 1000 px
  const mid = await open('?refresh=3600', { viewport: { width: 1000, height: 900 } });
  b = await boxes(mid.page);
  assert.ok(b.every((x) => x.x === b[0].x), 'one column');
  assert.ok(b[1].y > b[0].y && b[2].y > b[1].y && b[3].y > b[2].y, 'stacked');
  assert.ok(b.every((x) => x.w >= 500), 'panels at least 500 px');
  assert.equal(await overflow(mid.page), 0, 'no sideways scrolling');
  await sparks(mid.page, '1000 px');
  const f2 = await shot(mid.page, 'dashboard-1000px');

  // exactly at the breakpoint: 1200 px still has two columns, 1199 has one
  await mid.page.setViewportSize({ width: 1200, height: 900 });
  b = await boxes(mid.page);
  assert.equal(b[0].y, b[1].y, '2 columns at 1200 px');
  await mid.page.setViewportSize({ width: 1199, height: 900 });
  b = await boxes(mid.page);
  assert.ok(b[1].y > b[0].y, '1 column at 1199 px');

  // a phone: the page does not scroll sideways, the wide tables do
  const phone = await open('?refresh=3600', { viewport: { width: 390, height: 844 } });
  assert.equal(await overflow(phone.page), 0, 'the page fits a phone');
  await sparks(phone.page, 'phone');
  const tables = await phone.page.$$eval('.wide-table', (ts) => ts.map((tb) => {
    const s = tb.parentElement;
    return { id: tb.id || tb.closest('section').id, scrolls: s.scrollWidth > s.clientWidth, ox: getComputedStyle(s).overflowX };
  }));
  for (const x of tables) assert.ok(x.scrolls && x.ox === 'auto', `${x.id} scrolls sideways`);
  await shot(phone.page, 'dashboard-phone');
  t.diagnostic(`screenshots: ${path.relative(ROOT, f1)}, ${path.relative(ROOT, f2)}`);
}));

test('the countdown ticks and a refresh updates the values (/dashboard/?refresh=2)', withPages('countdown', async (t, open) => {
  // with a trailing slash: the page finds its JSON all the same
  const { page, data: first } = await open('/?refresh=2');
  assert.equal(await page.textContent('#refresh-every'), '(every 2s)');
  const cd = await page.textContent('#countdown');
  assert.ok(['2s', '1s'].includes(cd), `countdown right after the load: ${cd}`);

  // traffic between two refreshes
  const before = await page.textContent('.stat [data-field="performance.total_requests"]');
  const tok = stack.jwt('carol');
  for (let i = 0; i < 5; i++) await stack.request('GET', '/api/chat/groups', { token: tok });
  const n = await renders(page);
  const res = await page.waitForResponse((r) => isApi(r.url()), { timeout: 5000 });
  const next = await res.json();
  await page.waitForFunction((k) => Number(document.body.dataset.renders) > k, n);

  const seen = (await page.evaluate(() => window.__countdown)).map((x) => x[1]);
  const i1 = seen.indexOf('1s');
  assert.ok(i1 >= 0 && seen.slice(i1).includes('refreshing'), `1s then refreshing: ${seen.join(',')}`);
  assert.ok(next.performance.total_requests >= first.performance.total_requests + 5, 'the API counted the traffic');
  const after_ = await page.textContent('.stat [data-field="performance.total_requests"]');
  assert.equal(after_, expectedText('int', next.performance.total_requests), 'the status bar shows the new count');
  assert.notEqual(after_, before);
  assert.equal(await page.textContent('#data-time'), expectedText('datetime', next.timestamp), 'the new timestamp');
  assert.match(await page.textContent('#countdown'), /^[12]s$/, 'the countdown starts again');
}));

test('thresholds at and over each limit (crafted data)', withPages('thresholds', async (t, open) => {
  const base = live.data;
  let body = base;
  const p = await newPage();
  await p.page.route('**/dashboard/api/data', (r) => r.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(body) }));
  // reuse openDashboard's wiring: the route is on the context's page
  const answer = p.page.waitForResponse((r) => isApi(r.url()));
  await p.page.goto(stack.url('/dashboard?refresh=3600'));
  await answer;
  await p.page.waitForFunction(() => Number(document.body.dataset.renders || 0) >= 1);
  const page = p.page;

  const variant = (perf, sys, res, db) => {
    const d = structuredClone(base);
    Object.assign(d.performance, perf);
    Object.assign(d.system, sys);
    Object.assign(d.system.resources, res);
    Object.assign(d.database, db);
    d.endpoints[0].error_rate_percent = perf.error_rate_percent;
    d.endpoints[0].avg_response_time_ms = perf.average_response_time_ms;
    return d;
  };
  const expectLevels = async (want, label) => {
    const f = await fields(page);
    for (const [field, level] of Object.entries(want)) {
      const els = f.filter((x) => x.field === field || x.status === field);
      assert.ok(els.length >= 1, `${field} is shown`);
      for (const e of els) {
        assert.equal(statusOf(e), level, `${label}: ${field} (${e.field}) is status-${level}`);
        assert.equal(e.color, COLORS[level], `${label}: ${field} (${e.field}) colour`);
      }
    }
    const row = await page.$eval('#tbl-endpoints tbody tr', (tr) => [tr.cells[3].className, tr.cells[4].className]);
    const lvl = want['performance.error_rate_percent'];
    assert.deepEqual(row.map((c) => c.split(' ').find((x) => x.startsWith('status-'))), [`status-${lvl}`, `status-${lvl}`], `${label}: endpoint row`);
  };

  body = variant(
    { error_rate_percent: 5, average_response_time_ms: 500, slow_requests_count: 10, very_slow_requests_count: 0 },
    { api_status: 'running', mongodb_healthy: true, mongodb_status: 'connected' },
    { process_memory_percent: 80, process_cpu_percent: 80 }, { stale: false });
  await refreshNow(page);
  await expectLevels({
    'performance.error_rate_percent': 'ok', 'performance.average_response_time_ms': 'ok',
    'performance.slow_requests_count': 'ok', 'performance.very_slow_requests_count': 'ok',
    'system.mongodb_healthy': 'ok', 'system.api_status': 'ok',
    'system.resources.process_memory_percent': 'ok', 'system.resources.process_cpu_percent': 'ok',
    'database.stale': 'ok',
  }, 'at the limits');

  body = variant(
    { error_rate_percent: 5.01, average_response_time_ms: 500.01, slow_requests_count: 11, very_slow_requests_count: 1 },
    { api_status: 'down', mongodb_healthy: false, mongodb_status: 'No suitable servers found' },
    { process_memory_percent: 80.01, process_cpu_percent: 93.5 }, { stale: true });
  await refreshNow(page);
  await expectLevels({
    'performance.error_rate_percent': 'warning', 'performance.average_response_time_ms': 'warning',
    'performance.slow_requests_count': 'warning', 'performance.very_slow_requests_count': 'error',
    'system.mongodb_healthy': 'error', 'system.api_status': 'error',
    'system.resources.process_memory_percent': 'warning', 'system.resources.process_cpu_percent': 'warning',
    'database.stale': 'warning',
  }, 'over the limits');
  assert.equal(await page.textContent('.stat [data-field="system.mongodb_healthy"]'), 'UNHEALTHY');
  assert.equal(await page.textContent('#panel-system [data-field="system.mongodb_status"]'), 'No suitable servers found');
  await shot(page, 'thresholds-crossed');
  contexts.delete(p.ctx);
  await p.ctx.close();
}));

test('the cluster link: host, state in its colour, servers and counters from the JSON (live, then crafted data)', withPages('cluster', async (t, open) => {
  const base = live.data;
  // live: this stack's nginx has no chat_cluster: the link is off, the host
  // is the sidecar's own name
  assert.equal(base.cluster.state, 'off', 'live: off');
  assert.equal(base.cluster.enabled, false, 'live: not enabled');
  assert.ok(typeof base.system.host === 'string' && base.system.host !== '', 'live: a host name');
  assert.equal(await live.page.textContent('#panel-system [data-field="system.host"]'), shown(base.system.host));
  assert.equal(await live.page.textContent('#stat-cluster [data-field="cluster.state"]'), 'off');

  let body = base;
  const p = await newPage();
  await p.page.route('**/dashboard/api/data', (r) => r.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(body) }));
  const answer = p.page.waitForResponse((r) => isApi(r.url()));
  await p.page.goto(stack.url('/dashboard?refresh=3600'));
  await answer;
  await p.page.waitForFunction(() => Number(document.body.dataset.renders || 0) >= 1);
  const page = p.page;

  const cases = [
    ['connected', 'ok', ['nats://10.0.0.1:4222', 'nats://10.0.0.2:4222'], 4, 4, ''],
    ['degraded', 'warning', ['nats://10.0.0.1:4222'], 1, 4, 'connection refused'],
    ['disconnected', 'error', [], 0, 4, 'nats: no servers available for connection'],
    ['off', 'off', [], 0, 0, ''],
  ];
  let n = 1;
  for (const [state, level, servers, up, workers, error] of cases) {
    const d = structuredClone(base);
    d.system.host = `chat-host-${n}`;
    d.cluster = {
      host: d.system.host, enabled: state !== 'off', state, workers_connected: up, workers,
      servers, servers_unlisted: 0, reconnects: 7 * n, events_in: 123456 * n, events_out: 2345 * n,
      gaps_filled: 12 * n, dropped: 3 * n, last_error: error,
    };
    body = d;
    await refreshNow(page);
    const stat = await page.$eval('#stat-cluster [data-field="cluster.state"]',
      (e) => ({ text: e.textContent, cls: [...e.classList], color: getComputedStyle(e).color }));
    assert.equal(stat.text, state, `${state}: the status bar shows it`);
    assert.ok(stat.cls.includes(`status-${level}`), `${state}: status-${level}`);
    assert.equal(stat.color, COLORS[level], `${state}: its colour`);
    assert.equal(await page.textContent('#panel-system [data-field="system.host"]'), d.system.host, `${state}: host`);
    assert.equal(await page.textContent('#cluster-link [data-field="cluster.state"]'), state);
    assert.equal(await page.textContent('#cluster-link [data-field="cluster.servers"]'),
      servers.length ? servers.join(', ') : 'none', `${state}: servers`);
    assert.equal(await page.textContent('#cluster-link [data-field="cluster.workers_connected"]'), String(up));
    assert.equal(await page.textContent('#cluster-link [data-field="cluster.workers"]'), String(workers));
    for (const k of ['events_in', 'events_out', 'gaps_filled', 'dropped', 'reconnects']) {
      assert.equal(await page.textContent(`#cluster-counts [data-field="cluster.${k}"]`),
        expectedText('int', d.cluster[k]), `${state}: ${k}`);
    }
    assert.equal(await page.textContent('#panel-system [data-field="cluster.last_error"]'),
      error === '' ? 'N/A' : error, `${state}: last error`);
    n++;
  }
  await shot(page, 'cluster-off');
  contexts.delete(p.ctx);
  await p.ctx.close();
}));

test("values the sidecar could not read show 'N/A'", withPages('na', async () => {
  const d = structuredClone(live.data);
  Object.assign(d.system, { uptime_seconds: null, uptime_formatted: null, nginx_pid: null });
  for (const k of Object.keys(d.system.resources)) d.system.resources[k] = null;
  d.database.top_active_groups[0].last_message = null;
  delete d.endpoints[0].p95_response_time_ms;
  const variants = [d, (() => { const e = structuredClone(d); delete e.system.resources; return e; })()];
  const p = await newPage();
  let body = variants[0];
  await p.page.route('**/dashboard/api/data', (r) => r.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(body) }));
  await p.page.goto(stack.url('/dashboard?refresh=3600'));
  await p.page.waitForFunction(() => Number(document.body.dataset.renders || 0) >= 1);
  try {
    for (const [i, v] of variants.entries()) {
      body = v;
      if (i) await refreshNow(p.page);
      const f = await fields(p.page);
      for (const field of ['system.uptime_seconds', 'system.uptime_formatted', 'system.nginx_pid',
        'system.resources.process_memory_mb', 'system.resources.process_memory_percent',
        'system.resources.process_cpu_percent', 'system.resources.system_memory_percent',
        'system.resources.system_memory_available_mb', 'system.resources.process_count']) {
        for (const e of f.filter((x) => x.field === field)) {
          assert.equal(e.text, 'N/A', `variant ${i}: ${field}`);
          assert.ok(e.classes.includes('na'), `variant ${i}: ${field} marked N/A`);
          assert.equal(statusOf(e), null, `variant ${i}: ${field} has no status colour`);
        }
      }
      // units of an unknown value are hidden ("N/A", not "N/A MB")
      const unit = await p.page.$eval('#panel-system [data-field="system.resources.process_memory_mb"] + .u',
        (u) => getComputedStyle(u).display);
      assert.equal(unit, 'none', 'unit hidden');
      assert.equal((await tableRows(p.page, '#tbl-groups'))[0][5], 'N/A', 'last message N/A');
      assert.equal((await tableRows(p.page, '#tbl-endpoints'))[0][5], 'N/A', 'p95 N/A');
      // what is known is still shown
      assert.equal(await p.page.textContent('#panel-system [data-field="system.api_status"]'), v.system.api_status);
    }
    assert.deepEqual(await p.page.evaluate(() => window.__csp), []);
  } catch (e) {
    await shot(p.page, 'failed-na').catch(() => {});
    throw e;
  } finally {
    contexts.delete(p.ctx);
    await p.ctx.close();
  }
}));

test('every string from the API is text, never markup (crafted data)', async () => {
  const payload = (s) => `<img src=x onerror="window.__xss=1">${s}<script>window.__xss=2</script>`;
  const d = structuredClone(live.data);
  d.system.mongodb_status = payload('db');
  d.system.uptime_formatted = payload('up');
  d.database.top_active_groups.forEach((g) => { g.group_name = payload(g.group_name); });
  d.endpoints.forEach((e) => { e.endpoint = payload(e.endpoint); });
  d.recent_activity.recent_errors.forEach((r) => { r.correlation_id = payload(r.correlation_id); r.endpoint = payload(r.endpoint); });
  d.websockets.recent_events.forEach((e) => { e.user_id = payload(e.user_id); e.event_type = payload(e.event_type); });
  const p = await newPage();
  try {
    await p.page.route('**/dashboard/api/data', (r) => r.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(d) }));
    await p.page.goto(stack.url('/dashboard?refresh=3600'));
    await p.page.waitForFunction(() => Number(document.body.dataset.renders || 0) >= 1);
    await sleep(200);
    assert.equal(await p.page.evaluate(() => window.__xss), undefined, 'no payload ran');
    assert.equal(await p.page.$$eval('img', (x) => x.length), 0, 'no <img> injected');
    assert.equal(await p.page.$$eval('script', (x) => x.length), 1, 'only the page\'s own script');
    const errs = await tableRows(p.page, '#log-errors');
    assert.ok(errs.some((r) => r[5] === d.recent_activity.recent_errors[0].correlation_id), 'payload shown as text');
    assert.equal(await p.page.textContent('#panel-system [data-field="system.mongodb_status"]'), d.system.mongodb_status);
    assert.deepEqual(dialogs, [], 'no alert()');
  } finally {
    contexts.delete(p.ctx);
    await p.ctx.close();
  }
});

test('the page policy blocks injected inline script and style', async () => {
  const { page } = live;
  const r = await page.evaluate(() => new Promise((resolve) => {
    const got = [];
    const onV = (e) => got.push(e.effectiveDirective);
    document.addEventListener('securitypolicyviolation', onV);
    const s = document.createElement('script');
    s.textContent = 'window.__inline = 1';
    document.body.append(s);
    const h1 = document.querySelector('h1');
    h1.setAttribute('style', 'color: rgb(1, 2, 3)');
    setTimeout(() => {
      document.removeEventListener('securitypolicyviolation', onV);
      s.remove();
      resolve({ ran: window.__inline, color: getComputedStyle(h1).color, got });
    }, 300);
  }));
  assert.equal(r.ran, undefined, 'the injected inline script did not run');
  assert.notEqual(r.color, 'rgb(1, 2, 3)', 'the injected style attribute was not applied');
  assert.ok(r.got.includes('script-src-elem'), `violations: ${r.got}`);
  assert.ok(r.got.includes('style-src-attr'), `violations: ${r.got}`);
  await page.evaluate(() => { window.__csp = []; document.querySelector('h1').removeAttribute('style'); });
});

test('correlation IDs copy with one click; the filter narrows the logs', withPages('filter', async (t, open) => {
  const { page, data } = await open('?refresh=3600', { permissions: ['clipboard-read', 'clipboard-write'] });
  // the newest of the traffic's 404s still among the 20 recent errors (the
  // other tests' 401s push the oldest out, in an order the two workers'
  // batches set)
  const errs = data.recent_activity.recent_errors;
  const present = traffic.errorCids.filter((c) => errs.some((r) => r.correlation_id === c));
  assert.ok(present.length > 0, `a 404 of the traffic among the errors: ${JSON.stringify(errs.map((r) => [r.status_code, r.endpoint, r.correlation_id]))}`);
  const cid = present[present.length - 1];

  // copy
  await page.click(`#log-errors button.cid:text-is("${cid}")`);
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), cid, 'copied');
  await page.waitForFunction(() => document.getElementById('toast').classList.contains('show'));
  assert.equal(await page.textContent('#toast'), `copied ${cid}`);

  const count = (id) => page.$$eval(`${id} tbody tr`, (rs) => rs.filter((r) => !r.querySelector('.empty')).length);
  const cids = (id) => page.$$eval(`${id} tbody button.cid`, (bs) => bs.map((b) => b.textContent));

  // one correlation ID
  await page.fill('#filter', cid);
  assert.deepEqual(await cids('#log-errors'), [cid]);
  assert.equal(await count('#log-slow'), 0);
  assert.equal(await count('#log-ws'), 0);
  assert.match(await page.textContent('#log-errors [data-count]'), new RegExp(`^1 of ${data.recent_activity.recent_errors.length} shown$`));
  assert.match(await page.textContent('#log-slow tbody'), /no entries match/);

  // an endpoint: a group's WebSocket path
  const gid = traffic.groups.General;
  await page.fill('#filter', `/api/chat/ws/${gid}`);
  const ws = await tableRows(page, '#log-ws');
  const wantWs = data.websockets.recent_events.filter((e) => e.group_id === gid).length;
  assert.ok(wantWs >= 2 && ws.length === wantWs && ws.every((r) => r[3] === gid), 'only that group\'s WebSocket events');

  // an endpoint of requests, case-insensitive, METHOD + path
  await page.fill('#filter', 'post /api/chat/groups/{group_id}/messages');
  const slow = await cids('#log-slow');
  assert.equal(slow.length, data.performance.recent_slow_requests.filter((r) => r.method === 'POST'
    && r.endpoint === '/api/chat/groups/{group_id}/messages').length);
  assert.ok(slow.length >= 5, 'the slow uploads');
  assert.equal(await count('#log-errors'), 0);

  // a trace-id, or a whole traceparent: the request that came with it (a
  // slow upload); a trace a request started finds it by its UUID's digits
  await page.fill('#filter', traffic.trace.traceparent);
  assert.deepEqual(await cids('#log-slow'), [traffic.trace.traceId], 'a traceparent');
  await page.fill('#filter', traffic.trace.traceId.toUpperCase());
  assert.deepEqual(await cids('#log-slow'), [traffic.trace.traceId], 'a trace-id, any case');
  assert.match(traffic.trace.uuidTrace, /^[0-9a-f]{32}$/, 'the 400 started a trace');
  await page.fill('#filter', traffic.trace.uuidTrace);
  assert.deepEqual(await cids('#log-errors'), [traffic.trace.uuidCid], 'the trace of a generated UUID');
  assert.equal(await count('#log-slow'), 0);

  // the filter survives a refresh; clearing it shows everything again
  await page.fill('#filter', 'upload-very-slow');
  const d2 = await refreshNow(page);
  assert.deepEqual(await cids('#log-slow'), ['upload-very-slow']);
  await page.fill('#filter', '');
  assert.equal(await count('#log-slow'), d2.performance.recent_slow_requests.length);
  assert.equal(await count('#log-errors'), d2.recent_activity.recent_errors.length);
}));

// the text nodes of the page (not its script or style) and the input
// values that hold a raw bidirectional control
const rawControls = (page) => page.evaluate((src) => {
  const re = new RegExp(src, 'u');
  const bad = [];
  const w = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = w.nextNode(); n; n = w.nextNode()) {
    if (!n.parentElement.closest('script, style') && re.test(n.data)) bad.push(JSON.stringify(n.data));
  }
  for (const i of document.querySelectorAll('input')) if (re.test(i.value)) bad.push(`input ${JSON.stringify(i.value)}`);
  for (const e of document.querySelectorAll('[title]')) if (re.test(e.title)) bad.push(`title ${JSON.stringify(e.title)}`);
  return bad;
}, BIDI_RE.source);

// where each letter of word lands on the screen (left edges, px), in the
// first text node under each element matching sel that holds the word
const letterX = (page, sel, word) => page.$$eval(sel, (els, wd) => els.map((e) => {
  const w = document.createTreeWalker(e, NodeFilter.SHOW_TEXT);
  for (let n = w.nextNode(); n; n = w.nextNode()) {
    const i = n.data.indexOf(wd);
    if (i < 0) continue;
    return [...wd].map((_, k) => {
      const r = document.createRange();
      r.setStart(n, i + k);
      r.setEnd(n, i + k + 1);
      return r.getBoundingClientRect().left;
    });
  }
  return null;
}), word);
const leftToRight = (xs) => Array.isArray(xs) && xs.every((x, i) => i === 0 || x > xs[i - 1]);

test('bidirectional controls in group names and user ids are shown, not applied (real traffic)', withPages('bidi', async (t, open) => {
  const { page, data } = await open('?refresh=3600');
  const gid = traffic.groups[BIDI_NAME];
  // the API and the sidecar passed the names on unchanged
  const g = data.database.top_active_groups.find((x) => x.group_id === gid);
  assert.ok(g, 'the group among the top groups');
  assert.equal(g.group_name, BIDI_NAME, 'group name in the JSON');
  const evs = data.websockets.recent_events.filter((e) => e.user_id === BIDI_USER);
  assert.ok(evs.length >= 2 && evs.every((e) => e.group_id === gid), 'connect and disconnect of the user');

  // nothing on the page carries a raw control
  assert.deepEqual(await rawControls(page), [], 'raw bidirectional controls on the page');

  // each control is a visible marker, marked as such
  const row = await page.$$eval('#tbl-groups tbody tr', (trs, id) => {
    const tr = trs.find((r) => r.cells[2].textContent === id);
    return tr && { text: tr.cells[1].textContent, marks: [...tr.cells[1].querySelectorAll('.ctl')].map((m) => m.textContent) };
  }, gid);
  assert.ok(row, 'the group\'s row');
  assert.equal(row.text, shown(BIDI_NAME));
  assert.equal(row.text, '⟨U+202E⟩snimda⟨U+202C⟩ ⟨U+2066⟩⟨U+2067⟩⟨U+2068⟩⟨U+2069⟩ ⟨U+200E⟩⟨U+200F⟩⟨U+061C⟩ '
    + '⟨U+202A⟩⟨U+202B⟩⟨U+202D⟩⟨U+202C⟩');
  assert.deepEqual(row.marks, ['202E', '202C', '2066', '2067', '2068', '2069', '200E', '200F', '061C',
    '202A', '202B', '202D', '202C'].map((c) => `⟨U+${c}⟩`), 'one marker per control');
  const users = (await tableRows(page, '#log-ws')).filter((r) => r[3] === gid);
  assert.ok(users.length >= 2, 'the user\'s WebSocket events');
  for (const r of users) {
    assert.equal(r[4], '⟨U+202E⟩admin⟨U+202C⟩', 'user id');
    assert.equal(r[2], shown(BIDI_NAME), 'group name');
  }

  // and on the screen the letters read left to right ("admin", not "nimda")
  const xsUser = await letterX(page, '#log-ws tbody td', 'admin');
  assert.ok(xsUser.filter(Boolean).length >= 2, 'the user id cells');
  for (const xs of xsUser.filter(Boolean)) assert.ok(leftToRight(xs), `"admin" drawn left to right: ${xs}`);
  const xsName = (await letterX(page, '#tbl-groups tbody td', 'snimda')).filter(Boolean);
  assert.equal(xsName.length, 1);
  assert.ok(leftToRight(xsName[0]), `"snimda" drawn left to right: ${xsName[0]}`);

  // the filter box: a pasted id shows its controls too, and still finds the rows
  await page.fill('#filter', BIDI_USER);
  assert.equal(await page.inputValue('#filter'), shown(BIDI_USER), 'the filter box shows the markers');
  const rows = await tableRows(page, '#log-ws');
  assert.equal(rows.length, evs.length, 'the user\'s events');
  assert.ok(rows.every((r) => r[4] === shown(BIDI_USER)));
  await page.fill('#filter', 'abc\u202Exyz');
  assert.equal(await page.inputValue('#filter'), 'abc⟨U+202E⟩xyz');
  assert.equal((await tableRows(page, '#log-ws'))[0][0], 'no entries match "abc⟨U+202E⟩xyz"');
  assert.deepEqual(await rawControls(page), [], 'raw bidirectional controls on the page');
  await shot(page, 'bidi');
}));

test('bidirectional controls anywhere in the data are shown, not applied; values are isolated (crafted data)', async () => {
  const rlo = (s) => `\u202E${s}\u202C`;
  const d = structuredClone(live.data);
  Object.assign(d.system, { mongodb_status: rlo('connected'), api_status: rlo('running'),
    uptime_formatted: rlo('1h 2m 3s'), uptime_source: rlo('nginx'), sidecar_version: rlo('1.0') });
  d.database.stale_reason = rlo('slow query');
  d.database.top_active_groups.forEach((g) => { g.group_id = rlo(g.group_id); });
  d.endpoints.forEach((e) => { e.endpoint = rlo(e.endpoint); });
  for (const r of [...d.recent_activity.recent_errors, ...d.performance.recent_slow_requests]) {
    Object.assign(r, { correlation_id: `cid-\u2067${r.correlation_id}\u2069`, endpoint: rlo(r.endpoint), method: rlo(r.method) });
  }
  d.websockets.recent_events.forEach((e) => { Object.assign(e, { event_type: rlo(e.event_type), user_id: `\u200F${e.user_id}\u061C` }); });
  d.websockets.connections_per_group.forEach((c) => { c.group_id = rlo(c.group_id); });
  const cid = d.recent_activity.recent_errors[0].correlation_id;
  const p = await newPage({ permissions: ['clipboard-read', 'clipboard-write'] });
  try {
    await p.page.route('**/dashboard/api/data', (r) => r.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(d) }));
    await p.page.goto(stack.url('/dashboard?refresh=3600'));
    await p.page.waitForFunction(() => Number(document.body.dataset.renders || 0) >= 1);
    const page = p.page;
    assert.deepEqual(await rawControls(page), [], 'raw bidirectional controls on the page');
    assert.equal(await page.textContent('#panel-system [data-field="system.mongodb_status"]'), '⟨U+202E⟩connected⟨U+202C⟩');
    assert.equal((await tableRows(page, '#tbl-endpoints'))[0][0], shown(d.endpoints[0].endpoint));
    const errs = await tableRows(page, '#log-errors');
    const req = newestFirst(d.recent_activity.recent_errors)[0];
    assert.deepEqual([errs[0][1], errs[0][2], errs[0][5]], [req.method, req.endpoint, req.correlation_id].map(shown));
    const ws = await tableRows(page, '#log-ws');
    const ev = newestFirst(d.websockets.recent_events)[0];
    assert.deepEqual([ws[0][1], ws[0][3], ws[0][4]], [ev.event_type, ev.group_id, ev.user_id].map(shown));

    // the copy button copies the real id; the toast shows it with its markers
    const buttons = await page.$$('#log-errors button.cid');
    const texts = await Promise.all(buttons.map((b) => b.textContent()));
    assert.ok(texts.includes(shown(cid)), `${shown(cid)} among ${texts}`);
    await buttons[texts.indexOf(shown(cid))].click();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), cid, 'copied as it is');
    assert.equal(await page.textContent('#toast'), `copied ${shown(cid)}`);
    // the filter finds it by what the page shows, and by the raw id
    for (const q of [shown(cid), cid]) {
      await page.fill('#filter', q);
      assert.deepEqual((await tableRows(page, '#log-errors')).map((r) => r[5]), [shown(cid)], `filter ${JSON.stringify(q)}`);
    }
    assert.deepEqual(await rawControls(page), [], 'raw bidirectional controls on the page');

    // and each value is its own bidi isolate (<bdi> in the composed texts):
    // right-to-left text in it cannot move what stands beside it
    const iso = await page.$$eval('[data-field], td, button.cid', (es) => es.filter((e) => getComputedStyle(e).unicodeBidi !== 'isolate').length);
    assert.equal(iso, 0, 'every value is isolated');
    assert.equal(await page.$eval('#toast bdi', (b) => b.textContent), shown(cid), 'the toast isolates the id');

    // a marker means a control: the marker's text typed literally is plain text
    const sel = '#panel-system [data-field="system.mongodb_status"]';
    assert.equal(await page.$$eval(`${sel} .ctl`, (m) => m.length), 2, 'two markers');
    const d2 = structuredClone(d);
    d2.system.mongodb_status = shown(d.system.mongodb_status);
    await page.unroute('**/dashboard/api/data');
    await page.route('**/dashboard/api/data', (r) => r.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(d2) }));
    await refreshNow(page);
    assert.equal(await page.textContent(sel), '⟨U+202E⟩connected⟨U+202C⟩');
    assert.equal(await page.$$eval(`${sel} .ctl`, (m) => m.length), 0, 'literal text, no markers');
  } catch (e) {
    await shot(p.page, 'failed-bidi-crafted').catch(() => {});
    throw e;
  } finally {
    contexts.delete(p.ctx);
    await p.ctx.close();
  }
});

test('times are UTC in a browser in another time zone (Asia/Kolkata, UTC+05:30)', withPages('timezone', async (t, open) => {
  const before_ = Date.now();
  const { page, data } = await open('?refresh=3600', { timezoneId: 'Asia/Kolkata' });
  const after_ = Date.now();
  // the browser really is 5:30 ahead
  const zone = await page.evaluate(() => [Intl.DateTimeFormat().resolvedOptions().timeZone,
    new Date(Date.UTC(2026, 0, 1)).getTimezoneOffset()]);
  assert.ok(['Asia/Kolkata', 'Asia/Calcutta'].includes(zone[0]) && zone[1] === -330, `the browser's zone: ${zone}`);
  // the API's UTC times, read off the strings themselves ("...T17:05:09.123Z")
  const parts = (iso) => iso.match(/^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})\.(\d{3})Z$/);
  assert.ok(parts(data.timestamp), `timestamp ${data.timestamp}`);
  const [, day, clock, ms] = parts(data.timestamp);
  assert.equal(await page.textContent('#data-time'), `${day} ${clock} UTC`, 'header timestamp');
  assert.equal(await page.textContent('[data-field="database.refreshed_at"]'),
    `${parts(data.database.refreshed_at)[1]} ${parts(data.database.refreshed_at)[2]} UTC`, 'database refreshed at');
  const errs = await tableRows(page, '#log-errors');
  assert.deepEqual(errs.map((r) => r[0]), newestFirst(data.recent_activity.recent_errors)
    .map((r) => `${parts(r.timestamp)[2]}.${parts(r.timestamp)[3]}`), 'error log times');
  const groups = await tableRows(page, '#tbl-groups');
  assert.deepEqual(groups.map((r) => r[5]), data.database.top_active_groups
    .map((g) => (g.last_message === null ? 'N/A' : `${parts(g.last_message)[1]} ${parts(g.last_message)[2]} UTC`)), 'last message times');
  const h = data.history;
  assert.equal(await page.textContent('#history-note'),
    `per minute, ${h.length} min: ${parts(h[0].minute)[2].slice(0, 5)} - ${parts(h[h.length - 1].minute)[2].slice(0, 5)} UTC`);
  // the footer: the browser's own clock, in UTC
  const last = await page.textContent('#last-update');
  const m = last.match(/^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}) UTC$/);
  assert.ok(m, `last update ${last}`);
  const at = Date.parse(`${m[1]}T${m[2]}Z`);
  assert.ok(at >= Math.floor(before_ / 1000) * 1000 && at <= after_, `last update ${last} is now, in UTC`);
  t.diagnostic(`${data.timestamp} shown as ${day} ${clock} UTC (ms ${ms} dropped) in Asia/Kolkata`);

  // a time without a zone (as the spec's utcnow().isoformat() writes it) is UTC too
  const d = structuredClone(data);
  d.timestamp = '2026-01-15T23:50:07.123456';
  d.database.refreshed_at = '2026-01-15 23:49:58';
  d.recent_activity.recent_errors = [{ ...data.recent_activity.recent_errors[0], timestamp: '2026-01-15T23:45:01.5' }];
  await page.route('**/dashboard/api/data', (r) => r.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(d) }));
  await refreshNow(page);
  assert.equal(await page.textContent('#data-time'), '2026-01-15 23:50:07 UTC');
  assert.equal(await page.textContent('[data-field="database.refreshed_at"]'), '2026-01-15 23:49:58 UTC');
  assert.equal((await tableRows(page, '#log-errors'))[0][0], '23:45:01.500');
}));

test('the default refresh interval is 10 s', async () => {
  // the live page was opened without ?refresh; its second fetch is due 10 s
  // after the first (other tests ran meanwhile)
  const { page, w } = live;
  assert.equal(await page.textContent('#refresh-every'), '(every 10s)');
  const end = Date.now() + 13000;
  while (w.apiRequests.length < 2 && Date.now() < end) await sleep(100);
  assert.ok(w.apiRequests.length >= 2, 'a second fetch');
  const dt = w.apiRequests[1] - w.apiRequests[0];
  assert.ok(dt >= 9500 && dt <= 11000, `10 s between fetches: ${dt} ms`);
  const seen = (await page.evaluate(() => window.__countdown)).map((x) => x[1]);
  const i10 = seen.indexOf('10s');
  assert.ok(i10 >= 0, `countdown shows 10s: ${seen.join(',')}`);
  const want = ['10s', '9s', '8s', '7s', '6s', '5s', '4s', '3s', '2s', '1s', 'refreshing'];
  assert.deepEqual(seen.slice(i10, i10 + want.length), want, 'ticks down second by second');
  await live.ctx.close();
});

test('a failed API shows the banner and keeps the last good data (network error, 500, bad JSON)', withPages('banner', async (t, open) => {
  const { page, data } = await open('?refresh=3600');
  assert.equal(await page.isVisible('#banner'), false, 'no banner while all is well');
  const shown = () => page.$$eval('[data-field]', (els) => els.map((e) => e.textContent));
  const good = await shown();
  const lastUpdate = await page.textContent('#last-update');

  const cases = [
    ['network error', (r) => r.abort('connectionrefused'), /network error/],
    ['HTTP 500', (r) => r.fulfill({ status: 500, contentType: 'text/plain', body: 'boom' }), /HTTP 500/],
    ['invalid JSON', (r) => r.fulfill({ status: 200, contentType: 'application/json', body: '{"system": ' }), /not valid JSON/],
  ];
  for (const [name, handler, re] of cases) {
    await page.route('**/dashboard/api/data', handler);
    const n = await failures(page);
    await page.click('#refresh-now');
    await page.waitForFunction((k) => Number(document.body.dataset.failures || 0) > k, n);
    assert.equal(await page.isVisible('#banner'), true, `${name}: banner`);
    const text = await page.textContent('#banner');
    assert.match(text, re, `${name}: ${text}`);
    assert.match(text, /retrying at the next refresh/);
    assert.ok(text.includes(lastUpdate), `${name}: says which data is shown`);
    assert.equal(await page.$eval('#banner', (b) => getComputedStyle(b).color), COLORS.error);
    assert.deepEqual(await shown(), good, `${name}: the last good data stays`);
    assert.equal(await page.textContent('#last-update'), lastUpdate, `${name}: last update unchanged`);
    await page.unroute('**/dashboard/api/data');
  }
  await shot(page, 'banner');
  // the API answers again: the banner goes
  const d = await refreshNow(page);
  assert.equal(await page.isVisible('#banner'), false, 'banner gone');
  assert.equal(await page.textContent('#data-time'), expectedText('datetime', d.timestamp));
  assert.ok(d.performance.total_requests > data.performance.total_requests);
}));

test('the sidecar stopped: nginx answers 502, the banner shows, the next tick recovers', withPages('sidecar', async (t, open) => {
  const { page } = await open('?refresh=1');
  await page.waitForFunction(() => document.body.dataset.state === 'ok');
  const good = await page.$$eval('[data-field]', (els) => els.map((e) => e.textContent));
  const n = await failures(page);
  await stack.stopSidecar();
  try {
    const res = await page.waitForResponse((r) => isApi(r.url()) && r.status() === 502, { timeout: 5000 });
    assert.equal(res.status(), 502);
    await page.waitForFunction((k) => Number(document.body.dataset.failures || 0) > k, n);
    assert.equal(await page.isVisible('#banner'), true);
    assert.match(await page.textContent('#banner'), /HTTP 502/);
    assert.deepEqual(await page.$$eval('[data-field]', (els) => els.map((e) => e.textContent)), good, 'last good data kept');
  } finally {
    await stack.startSidecar();
  }
  const k = await renders(page);
  const res = await page.waitForResponse((r) => isApi(r.url()) && r.status() === 200, { timeout: 5000 });
  const d = await res.json();
  await page.waitForFunction((x) => Number(document.body.dataset.renders) > x, k);
  assert.equal(await page.isVisible('#banner'), false, 'banner gone');
  assert.equal(await page.textContent('.stat [data-field="performance.total_requests"]'),
    expectedText('int', d.performance.total_requests), 'the new sidecar\'s figures');
}));
