'use strict';
// traffic.js - real HTTP and WebSocket traffic through nginx, so that every
// panel of the dashboard has something to show: groups (one named like an
// XSS payload, one with bidirectional controls), messages, soft deletes,
// 404s and 401s, slow uploads (the sidecar's slow thresholds are lowered
// for the tests), WebSocket connections (two kept open, two opened and
// closed again, one of them by a user whose id has bidirectional controls).

const crypto = require('node:crypto');
const net = require('node:net');
const { sleep } = require('./stack');

const XSS_NAME = '<img src=x onerror=alert(1)>';
// Every Unicode bidirectional control (U+061C, U+200E/F, U+202A-E,
// U+2066-9): applied, the name would read "admins ..." and the user
// "nimda"; the page must show them, not obey them.
const BIDI_NAME = '\u202Esnimda\u202C \u2066\u2067\u2068\u2069 \u200E\u200F\u061C \u202A\u202B\u202D\u202C';
const BIDI_USER = '\u202Eadmin\u202C';

// A minimal RFC 6455 client over a raw socket (node 20 has no global
// WebSocket): the opening handshake, then a close frame on close().
function wsConnect(port, path, { correlationId } = {}) {
  return new Promise((resolve, reject) => {
    const key = crypto.randomBytes(16).toString('base64');
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const fail = (e) => { sock.destroy(); reject(e); };
    sock.setTimeout(5000, () => fail(new Error(`WebSocket ${path}: no answer`)));
    sock.once('error', fail);
    sock.on('data', function onData(d) {
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      sock.removeListener('data', onData);
      sock.setTimeout(0);
      const head = buf.slice(0, end);
      if (!/^HTTP\/1\.1 101 /.test(head)) return fail(new Error(`WebSocket ${path}: ${head.split('\r\n')[0]}`));
      // server frames: answer pings (the module closes idle clients), drop the rest
      let rx = Buffer.from(buf.slice(end + 4), 'latin1');
      const frame = (opcode, payload) => {
        const mask = crypto.randomBytes(4);
        const body = Buffer.from(payload).map((x, i) => x ^ mask[i % 4]);
        return Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | body.length]), mask, body]);
      };
      const parse = () => {
        for (;;) {
          if (rx.length < 2) return;
          let len = rx[1] & 0x7f;
          let off = 2;
          if (len === 126) { if (rx.length < 4) return; len = rx.readUInt16BE(2); off = 4; }
          else if (len === 127) { if (rx.length < 10) return; len = Number(rx.readBigUInt64BE(2)); off = 10; }
          if (rx.length < off + len) return;
          const opcode = rx[0] & 0x0f;
          const payload = rx.subarray(off, off + len);
          rx = rx.subarray(off + len);
          if (opcode === 0x9 && !sock.destroyed) sock.write(frame(0xa, payload.subarray(0, 125)));
        }
      };
      sock.on('data', (d) => { rx = Buffer.concat([rx, d]); parse(); });
      sock.on('error', () => {});
      parse();
      resolve({
        close() {
          return new Promise((res) => {
            if (sock.destroyed) return res();
            sock.once('close', res);
            sock.write(frame(0x8, [0x03, 0xe8]));      // close, status 1000
            setTimeout(() => sock.destroy(), 1000).unref();
          });
        },
      });
    });
    sock.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`
      + 'Upgrade: websocket\r\nConnection: Upgrade\r\n'
      + `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n`
      + (correlationId ? `X-Correlation-ID: ${correlationId}\r\n` : '')
      + '\r\n');
  });
}

// A POST whose body arrives in two parts, pauseMs apart: nginx times the
// request from its start, so it is as slow as we like, deterministically.
function slowPost(port, path, token, body, pauseMs, correlationId, traceparent) {
  return new Promise((resolve, reject) => {
    const data = Buffer.from(JSON.stringify(body));
    const sock = net.connect({ host: '127.0.0.1', port });
    let out = '';
    sock.setTimeout(10000, () => { sock.destroy(); reject(new Error(`slow POST ${path}: timeout`)); });
    sock.once('error', reject);
    sock.on('data', (d) => { out += d.toString('latin1'); });
    sock.once('end', () => {
      const status = Number((out.match(/^HTTP\/1\.1 (\d{3})/) || [])[1]);
      if (status !== 201) reject(new Error(`slow POST ${path}: ${out.split('\r\n')[0]}`));
      else resolve(status);
    });
    sock.once('connect', () => {
      sock.write(`POST ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`
        + `Authorization: Bearer ${token}\r\nContent-Type: application/json\r\n`
        + `Content-Length: ${data.length}\r\nX-Correlation-ID: ${correlationId}\r\n`
        + (traceparent ? `traceparent: ${traceparent}\r\n` : '')
        + 'Connection: close\r\n\r\n');
      sock.write(data.subarray(0, 4));
      setTimeout(() => sock.write(data.subarray(4)), pauseMs);
    });
  });
}

function check(r, status, what) {
  if (r.status !== status) throw new Error(`${what}: expected ${status}, got ${r.status} ${r.body}`);
  return r;
}

// slowMs / verySlowMs: the sidecar's --slow-ms / --very-slow-ms; slowCount
// slow uploads (one of them very slow) are made at once
async function makeTraffic(stack, { holdMs = 200, slowMs = 100, verySlowMs = 250, slowCount = 12 } = {}) {
  const alice = stack.jwt('alice');
  const bob = stack.jwt('bob');
  const post = (p, body, token = alice) => stack.request('POST', p, { body, token });

  // groups with distinct message counts, so that the top list has an order
  const plan = [['General', 9], [XSS_NAME, 6], ['ops-alerts', 4], [BIDI_NAME, 3], ['Café <b>&"', 2]];
  const groups = {};
  for (const [name, n] of plan) {
    const g = check(await post('/api/chat/groups', { name }), 201, `create ${name}`).json;
    groups[name] = g.id;
    for (let i = 0; i < n; i++) {
      check(await post(`/api/chat/groups/${g.id}/messages`, { content: `${name} #${i}` },
        i % 2 ? bob : alice), 201, 'post');
    }
  }

  // soft deletes: two of General's messages (by their author)
  const list = check(await stack.request('GET', `/api/chat/groups/${groups.General}/messages`,
    { token: alice }), 200, 'list').json.messages;
  const mine = list.filter((m) => m.user_id === 'alice').slice(0, 2);
  for (const m of mine) {
    check(await stack.request('DELETE', `/api/chat/groups/${groups.General}/messages/${m.id}`,
      { token: alice }), 200, 'delete');
  }

  // errors: unknown groups (404), no token (401), a bad id (422 or 400)
  const errorCids = [];
  for (let i = 0; i < 6; i++) {
    const cid = `trace-404-${i}`;
    errorCids.push(cid);
    await stack.request('GET', '/api/chat/groups/5f0000000000000000000000', {
      token: alice, headers: { 'x-correlation-id': cid },
    });
  }
  await stack.request('GET', '/api/chat/groups', { headers: { 'x-correlation-id': 'trace-401-0' } });
  // W3C Trace Context: a request without a traceparent starts a trace
  // named by its generated UUID (this one), one with a traceparent is
  // named by its trace-id (a slow upload below); no error of their own, so
  // that the 20 recent errors the data lists keep the ones above
  const badId = await stack.request('GET', '/api/chat/groups/not-an-id', { token: alice });
  const uuidCid = badId.headers.get('x-correlation-id');
  // its trace-id is the UUID's digits (README, "Trace context"; the
  // traceparent response header is off by default)
  const uuidTrace = (uuidCid || '').replace(/-/g, '');
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const traceparent = `00-${traceId}-00f067aa0ba902b7-01`;
  for (let i = 0; i < 5; i++) await stack.request('GET', '/api/chat/groups?limit=10', { token: bob });

  // slow requests, in parallel: slowCount - 1 slow ones and a very slow one
  const slowCids = [];
  await Promise.all(Array.from({ length: slowCount }, (_, i) => {
    const very = i === slowCount - 1;
    const cid = very ? 'upload-very-slow' : `upload-slow-${i}`;
    slowCids.push(cid);
    return slowPost(stack.port, `/api/chat/groups/${groups['ops-alerts']}/messages`, bob,
      { content: `slow upload ${i}` }, very ? verySlowMs + 100 : slowMs + 50, cid);
  }));
  // one more, the newest slow request, with a traceparent: its trace-id is
  // its correlation ID (the data lists the 10 newest slow requests)
  if (slowCount) {
    await slowPost(stack.port, `/api/chat/groups/${groups['ops-alerts']}/messages`, bob,
      { content: 'slow upload, traced' }, slowMs + 50, 'upload-traced', traceparent);
    slowCids.push(traceId);
  }

  // WebSockets: two stay open; one is held holdMs, then closed
  const port = stack.port;
  const wsPath = (g, t) => `/api/chat/ws/${g}?token=${t}`;
  const open = [
    await wsConnect(port, wsPath(groups.General, alice), { correlationId: 'ws-alice-general' }),
    await wsConnect(port, wsPath(groups['ops-alerts'], bob), { correlationId: 'ws-bob-ops' }),
  ];
  const brief = [
    await wsConnect(port, wsPath(groups.General, bob), { correlationId: 'ws-bob-brief' }),
    await wsConnect(port, wsPath(groups[BIDI_NAME], stack.jwt(BIDI_USER)), { correlationId: 'ws-bidi-brief' }),
  ];
  await sleep(holdMs);
  for (const w of brief) await w.close();
  // a message while connections are open: a broadcast
  check(await post(`/api/chat/groups/${groups.General}/messages`, { content: 'hello, live' }),
    201, 'broadcast');

  return {
    groups,
    errorCids,
    slowCids,
    trace: { traceId, traceparent, uuidCid, uuidTrace },
    summary: { groups: Object.keys(groups).length, ws_open: open.length },
    close: () => Promise.all(open.map((w) => w.close())),
  };
}

module.exports = { makeTraffic, wsConnect, slowPost, XSS_NAME, BIDI_NAME, BIDI_USER };
