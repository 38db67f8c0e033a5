#!/usr/bin/env node
'use strict';
// csp-hash.js [--write] [FILE] - the page's own Content-Security-Policy
// (<meta http-equiv>) allows exactly its inline <script> and <style> by
// their SHA-256 hashes. Without --write: check that the hashes in the meta
// tag match the page (exit 1 if not). With --write: put the right ones in.
// `make dashboard-csp` runs it with --write after the page was edited.

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const args = process.argv.slice(2);
const write = args.includes('--write');
const file = args.find((a) => !a.startsWith('--'))
  || path.resolve(__dirname, '..', '..', 'html', 'dashboard.html');

function hashes(html) {
  const one = (tag) => {
    const all = [...html.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g'))];
    if (all.length !== 1) throw new Error(`${file}: expected one inline <${tag}>, found ${all.length}`);
    return `'sha256-${crypto.createHash('sha256').update(all[0][1], 'utf8').digest('base64')}'`;
  };
  return { script: one('script'), style: one('style') };
}

const META = /(<meta http-equiv="Content-Security-Policy" content="[^"]*script-src )('sha256-[^']*')([^"]*style-src )('sha256-[^']*')/;

function check(html) {
  const m = html.match(META);
  if (!m) throw new Error(`${file}: no CSP meta tag with script-src and style-src hashes`);
  const want = hashes(html);
  return { ok: m[2] === want.script && m[4] === want.style, have: { script: m[2], style: m[4] }, want };
}

module.exports = { hashes, check };

if (require.main === module) {
  const html = fs.readFileSync(file, 'utf8');
  const r = check(html);
  if (write) {
    if (r.ok) {
      console.log(`${path.basename(file)}: CSP hashes already up to date`);
    } else {
      fs.writeFileSync(file, html.replace(META, `$1${r.want.script}$3${r.want.style}`));
      console.log(`${path.basename(file)}: script-src ${r.want.script}, style-src ${r.want.style}`);
    }
  } else if (!r.ok) {
    console.error(`${file}: the CSP meta hashes do not match the inline script/style; run: make dashboard-csp`);
    process.exit(1);
  } else {
    console.log(`${path.basename(file)}: CSP hashes match`);
  }
}
