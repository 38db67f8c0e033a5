'use strict';
// stack.js - the real stack for the browser tests: the embedded database
// (devdb, FerretDB), the sidecar and nginx with ngx_chat_module, on free
// loopback ports in a throwaway directory.  nginx's configuration is
// generated from nginx.conf.example with the same @PLACEHOLDER@ list as
// scripts/run.sh.  Everything started here is stopped by pid, never by name.
//
//   const stack = await Stack.start({ sidecarArgs: [...] });
//   stack.url('/dashboard'), stack.auth, stack.jwt('alice')
//   await stack.stopSidecar(); await stack.startSidecar();
//   await stack.stop();
//
// As a command, for trying the page by hand:
//   node t/browser/stack.js        (Ctrl-C stops everything)

const { spawn, execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..', '..');
// the suite's choices win (make test-asan runs the sanitizer builds)
const NGINX = process.env.TEST_NGINX_BINARY || process.env.NGINX
              || '/usr/sbin/nginx';
const MODULE = (process.env.TEST_NGINX_LOAD_MODULES || '').split(' ')[0]
               || path.join(ROOT, 'build', 'ngx_chat_module.so');
const SIDECAR = process.env.TEST_NGINX_SIDECAR_BIN
                || path.join(ROOT, 'build', 'sidecar', 'chat-sidecar');
const RUN_DB = path.join(ROOT, 'devdb', 'run-db.sh');
const DEVDB = path.join(ROOT, 'build', 'devdb');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const c = net.connect({ host: '127.0.0.1', port });
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

function alive(child) {
  return child && child.exitCode === null && child.signalCode === null;
}

async function waitPort(port, child, what, logFile, ms = 10000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await canConnect(port)) return;
    if (child && !alive(child)) {
      throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}); `
        + `end of ${logFile}:\n${tail(logFile)}`);
    }
    await sleep(50);
  }
  throw new Error(`${what} not listening on ${port} after ${ms} ms; `
    + `end of ${logFile}:\n${tail(logFile)}`);
}

function tail(file, n = 10) {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n).join('\n');
  } catch {
    return '(no log)';
  }
}

// stop one child by its pid: signal, wait, then SIGKILL
async function stopChild(child, signal, graceMs = 5000) {
  if (!alive(child)) return;
  const done = new Promise((r) => child.once('exit', r));
  try { process.kill(child.pid, signal); } catch { return; }
  const t = setTimeout(() => { try { process.kill(child.pid, 'SIGKILL'); } catch {} }, graceMs);
  await done;
  clearTimeout(t);
}

function b64url(buf) {
  return Buffer.from(buf).toString('base64url');
}

class Stack {
  constructor(opts) {
    this.opts = opts;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-browser.'));
    fs.chmodSync(this.dir, 0o755);          // nginx workers (nobody) reach the ipc socket
    for (const d of ['logs', 'tmp', 'run']) fs.mkdirSync(path.join(this.dir, d));
    this.ingest = `ipc://${this.dir}/run/m.ipc`;
    this.user = 'admin';
    this.password = crypto.randomBytes(12).toString('hex');
    this.auth = { username: this.user, password: this.password };
    this.children = new Set();
  }

  static async start(opts = {}) {
    for (const f of [MODULE, SIDECAR, DEVDB]) {
      if (!fs.existsSync(f)) throw new Error(`${f} is missing: run make && make devdb`);
    }
    const s = new Stack(opts);
    Stack.live.add(s);
    try {
      await s._start();
    } catch (e) {
      await s.stop();
      throw e;
    }
    return s;
  }

  async _start() {
    const dir = this.dir;

    // database: the devdb launcher picks a free port itself (race-free)
    this.dbPidFile = path.join(dir, 'run', 'devdb.pid');
    const base = execFileSync(RUN_DB, ['start', path.join(dir, 'db'), '0', this.dbPidFile],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
    this.mongoUri = base.replace(/\/+$/, '') + '/chat';

    // secrets, as scripts/run.sh makes them
    this.jwtSecretFile = path.join(dir, 'jwt-secret');
    this.jwtSecret = crypto.randomBytes(32).toString('hex');
    fs.writeFileSync(this.jwtSecretFile, this.jwtSecret + '\n', { mode: 0o600 });
    this.htpasswd = path.join(dir, 'htpasswd');
    execFileSync('htpasswd', ['-cbB', this.htpasswd, this.user, this.password], { stdio: 'ignore' });
    fs.chmodSync(this.htpasswd, 0o644);
    this.scrapeTokenFile = path.join(dir, 'scrape-token');
    fs.writeFileSync(this.scrapeTokenFile, crypto.randomBytes(32).toString('hex') + '\n', { mode: 0o600 });

    // the key nginx adds for the sidecar (X-Sidecar-Key), as run.sh makes it
    this.sidecarKeyFile = path.join(dir, 'sidecar-key');
    this.sidecarKey = crypto.randomBytes(24).toString('hex');
    fs.writeFileSync(this.sidecarKeyFile, this.sidecarKey + '\n', { mode: 0o600 });

    this.sidecarPort = await freePort();
    await this.startSidecar();

    // nginx: the port may be taken between freePort() and bind(); retry
    for (let attempt = 1; ; attempt++) {
      this.port = await freePort();
      this._writeNginxConf();
      try {
        await this._startNginx();
        break;
      } catch (e) {
        if (attempt >= 3 || !/Address already in use/.test(e.message)) throw e;
      }
    }
    await this._waitIngest();
  }

  _writeNginxConf() {
    const d = this.dir;
    // the sed list of scripts/run.sh, placeholder for placeholder
    const conf = execFileSync('sed', [
      '-e', `s|@MODULE@|${MODULE}|g`,
      '-e', `s|@PREFIX@|${d}|g`,
      '-e', `s|@PORT@|${this.port}|g`,
      '-e', `s|@MONGO_URI@|${this.mongoUri}|g`,
      '-e', `s|@JWT_SECRET_FILE@|${this.jwtSecretFile}|g`,
      '-e', `s|@METRICS_ADDRESS@|${this.ingest}|g`,
      '-e', `s|@SIDECAR@|127.0.0.1:${this.sidecarPort}|g`,
      '-e', `s|@SIDECAR_KEY@|${this.sidecarKey}|g`,
      '-e', `s|@HTPASSWD@|${this.htpasswd}|g`,
      '-e', `s|@SCRAPE_TOKEN_FILE@|${this.scrapeTokenFile}|g`,
      path.join(ROOT, 'nginx.conf.example'),
    ], { encoding: 'utf8' });
    this.nginxConf = path.join(d, 'nginx.conf');
    fs.writeFileSync(this.nginxConf, conf);
  }

  _spawn(cmd, args, logFile) {
    const fd = fs.openSync(logFile, 'a');
    const child = spawn(cmd, args, { stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  async _startNginx() {
    const d = this.dir;
    const errLog = path.join(d, 'logs', 'error.log');
    try {
      execFileSync(NGINX, ['-p', d, '-c', this.nginxConf, '-t', '-q'],
        { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (e) {
      throw new Error(`nginx -t failed: ${e.stderr}`);
    }
    this.nginx = this._spawn(NGINX, ['-p', d, '-c', this.nginxConf, '-g', 'daemon off;'],
      path.join(d, 'logs', 'nginx.out'));
    await waitPort(this.port, this.nginx, 'nginx', errLog);
  }

  async startSidecar() {
    const d = this.dir;
    const log = path.join(d, 'logs', 'sidecar.log');
    this.sidecar = this._spawn(SIDECAR, [
      '--listen', `127.0.0.1:${this.sidecarPort}`,
      '--http-key-file', this.sidecarKeyFile,
      '--ingest', this.ingest,
      '--mongo-uri', this.mongoUri,
      '--nginx-pid-file', path.join(d, 'logs', 'nginx.pid'),
      '--html-dir', path.join(ROOT, 'html'),
      '--db-refresh', '1',
      ...(this.opts.sidecarArgs || []),
    ], log);
    await waitPort(this.sidecarPort, this.sidecar, 'chat-sidecar', log);
  }

  async stopSidecar() {
    await stopChild(this.sidecar, 'SIGTERM');
  }

  // the workers connect to the sidecar's ingest socket asynchronously:
  // wait until a request made now shows up in the sidecar's counts
  async _waitIngest(ms = 10000) {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      const r = await this.request('GET', '/dashboard/api/data', { auth: true });
      if (r.status === 200 && JSON.parse(r.body).performance.total_requests > 0) return;
      await sleep(100);
    }
    throw new Error(`the sidecar received no request record within ${ms} ms; `
      + `${path.join(this.dir, 'logs')}:\n${tail(path.join(this.dir, 'logs', 'error.log'))}`);
  }

  url(p = '/') {
    return `http://127.0.0.1:${this.port}${p}`;
  }

  jwt(sub, ttl = 3600) {
    const now = Math.floor(Date.now() / 1000);
    const input = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' })) + '.'
      + b64url(JSON.stringify({ sub, iat: now, exp: now + ttl }));
    const sig = crypto.createHmac('sha256', this.jwtSecret).update(input).digest();
    return `${input}.${b64url(sig)}`;
  }

  // one HTTP request through nginx: { status, headers, body, json }
  async request(method, p, { body, token, auth, headers = {} } = {}) {
    const h = { ...headers };
    if (token) h.authorization = `Bearer ${token}`;
    if (auth) h.authorization = 'Basic '
      + Buffer.from(`${this.user}:${this.password}`).toString('base64');
    if (body !== undefined) h['content-type'] = 'application/json';
    const res = await fetch(this.url(p), {
      method, headers: h, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json;
    try { json = JSON.parse(text); } catch { json = undefined; }
    return { status: res.status, headers: res.headers, body: text, json };
  }

  async stop() {
    Stack.live.delete(this);
    await stopChild(this.nginx, 'SIGTERM');
    await stopChild(this.sidecar, 'SIGTERM');
    for (const c of [...this.children]) await stopChild(c, 'SIGKILL');
    if (this.dbPidFile) {
      try { execFileSync(RUN_DB, ['stop', this.dbPidFile], { stdio: 'ignore' }); } catch {}
    }
    if (!process.env.KEEP_STACK) fs.rmSync(this.dir, { recursive: true, force: true });
  }

  // last resort when the test process dies: our children, by pid
  killNow() {
    for (const c of this.children) { try { process.kill(c.pid, 'SIGKILL'); } catch {} }
    try {
      const pid = parseInt(fs.readFileSync(this.dbPidFile, 'utf8'), 10);
      if (pid > 0) process.kill(pid, 'SIGTERM');
    } catch {}
  }
}
Stack.live = new Set();
process.on('exit', () => { for (const s of Stack.live) s.killNow(); });
if (require.main !== module) {
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.once(sig, () => {
      for (const s of Stack.live) s.killNow();
      process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1));
    });
  }
}

module.exports = { Stack, ROOT, sleep };

if (require.main === module) {
  (async () => {
    const { makeTraffic } = require('./traffic');
    const stack = await Stack.start({ sidecarArgs: process.argv.slice(2) });
    const t = await makeTraffic(stack);
    console.log(`dashboard  ${stack.url('/dashboard')}`);
    console.log(`user       ${stack.user}`);
    console.log(`password   ${stack.password}`);
    console.log(`state      ${stack.dir}`);
    console.log(`traffic    ${JSON.stringify(t.summary)}`);
    console.log('Ctrl-C stops nginx, the sidecar and the database.');
    const stop = async () => { t.close(); await stack.stop(); process.exit(0); };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  })().catch((e) => { console.error(e); process.exit(1); });
}
