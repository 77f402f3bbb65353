// The MCP conformance package's authorization-server checks
// (`conformance authorization`), against the OAuth front of a dev-mode
// handler at BASE_URL, with this script playing the user's browser.
//
//   1. register a public client at BASE_URL/oauth/register whose redirect
//      URI is the conformance tool's callback, http://127.0.0.1:<port>/callback;
//   2. run `conformance authorization --url BASE_URL --client-id <id>
//      --resource BASE_URL/mcp -p <port> -o OUT_DIR`, which runs every
//      authorization-server scenario: the metadata endpoint, then the
//      authorization code grant, for which it prints an authorization URL
//      and waits for the redirect to its callback;
//   3. open that URL in Chromium (lib.mjs's withChromium): consent page,
//      Allow, demo user "all" on the Entra stand-in's account picker,
//      /auth/callback, and on to the tool's callback with code, state and
//      iss; the tool then trades the code itself;
//   4. read the checks.json of every scenario and compare what did not
//      pass with the baseline EXPECTED
//      (.ci/conformance-authorization-expected-failures.yml; its header says
//      how it reads), since this command of the package has no
//      expected-failures option of its own.
//
// It fails when a check fails or warns that the baseline does not list,
// when a listed check passes or is missing (a stale baseline), when a
// check or scenario is SKIPPED, when a scenario wrote no checks.json, or
// when the tool does not finish within TOOL_TIMEOUT.
//
// Environment: BASE_URL (the issuer, exactly), CONFORMANCE_BIN (the
// package's `conformance` executable, a Node script; run with this Node),
// OUT_DIR (the tool's results, and the browser's screenshot when it
// fails), EXPECTED (the baseline), CHROMIUM (executable). Codes, tokens and
// state are never printed: URLs are printed without their query.

import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { randomBytes } from 'node:crypto';

import {
  Failure, allowAndPick, check, demoUser, done, expectCode, need, ok, urlPath, withChromium, UI,
} from './lib.mjs';

const base = need('BASE_URL').replace(/\/$/, '');
const bin = realpathSync(need('CONFORMANCE_BIN'));
const outDir = need('OUT_DIR');
const expectedPath = need('EXPECTED');

const user = demoUser('all');
const TOOL_TIMEOUT = 90_000;
// The line the tool prints before the authorization URL (on the next line).
const URL_FOLLOWS = /^Access the following URL in your browser\b/;
const RESULT_DIR = /^authorization-server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$/;

async function main() {
  const expected = readBaseline(expectedPath);
  const scenarios = await listScenarios();
  check(scenarios.length > 0, `\`conformance list --authorization\` names no scenarios`);
  ok(`the tool has ${scenarios.length} authorization-server scenarios: ${scenarios.join(', ')}`);

  const port = await freePort();
  const callback = `http://127.0.0.1:${port}/callback`;
  const clientId = await register(callback);

  const before = new Set(existsSync(outDir) ? readdirSync(outDir) : []);
  const run = await runTool(['authorization', '--url', base, '--client-id', clientId, '--resource', `${base}/mcp`,
    '-p', String(port), '-o', outDir], callback);
  const problems = [];
  if (run.timedOut) {
    problems.push(`the tool did not finish within ${TOOL_TIMEOUT / 1000} s and was stopped` +
      (run.drove ? '' : ' (it printed no authorization URL that this script recognised)'));
  } else if (run.code !== 0 && run.code !== 1) {
    problems.push(`the tool exited with ${run.code ?? run.signal} (0 or 1 expected: did it crash?)`);
  }
  compare(readResults(before), scenarios, expected, run, problems);
}

// readBaseline reads the baseline file: "- <scenario>:<check-id>  # reason"
// lines (the reason is required), comment lines, and "[]" for none.
function readBaseline(path) {
  const entries = new Map();
  let empty = false;
  readFileSync(path, 'utf8').split('\n').forEach((raw, i) => {
    const line = raw.trim();
    const where = `${path}:${i + 1}`;
    if (line === '' || line.startsWith('#')) return;
    if (line === '[]') {
      empty = true;
      return;
    }
    const m = /^-\s+([a-z0-9][a-z0-9-]*):([a-z0-9][a-z0-9-]*)\s+#\s*(\S.*)$/i.exec(line);
    check(m, `${where}: want "- <scenario>:<check-id>  # reason", got "${line}"`);
    const key = `${m[1]}:${m[2]}`;
    check(!entries.has(key), `${where}: ${key} is listed twice`);
    entries.set(key, m[3]);
  });
  check(!(empty && entries.size), `${path}: "[]" and entries at once`);
  check(empty || entries.size, `${path}: no entries; write "[]" when nothing is expected to fail`);
  return entries;
}

// listScenarios asks the tool which authorization-server scenarios it has,
// so a scenario that writes no results is noticed.
async function listScenarios() {
  const out = await new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [bin, 'list', '--authorization'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    p.stdout.on('data', (c) => { text += c; });
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(text) : reject(new Failure(`\`conformance list --authorization\` exited with ${code}`))));
  });
  return [...out.matchAll(/^\s+- ([a-z0-9-]+)/gm)].map((m) => m[1]);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// register registers a public client (RFC 7591) for the tool's callback.
async function register(callback) {
  const name = `conformance-authorization ${randomBytes(3).toString('hex')}`;
  const res = await fetch(`${base}/oauth/register`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify({
      client_name: name,
      redirect_uris: [callback],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    }),
  });
  const text = await res.text();
  let info = null;
  try {
    info = JSON.parse(text);
  } catch {
    // Checked below.
  }
  check(res.status === 201 && info?.client_id,
    `POST /oauth/register answered ${res.status} ${info?.error ?? ''} ${info?.error_description ?? ''}`.trim());
  check(!info.client_secret, 'the registration answered a client_secret; the tool is run as a public client');
  ok(`registered "${name}" (public client) with redirect URI ${callback}`);
  return info.client_id;
}

// runTool runs the tool, echoes what it prints (URLs without their query,
// tallies reworded) and drives the authorization URL it prints. It stops
// the tool when driving fails or TOOL_TIMEOUT passes.
function runTool(args, callback) {
  console.log(`  $ conformance ${args.join(' ')}`);
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const result = { code: null, signal: null, timedOut: false, drove: false, error: null };
  let timer;
  const stop = () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 5_000).unref();
  };

  const exited = new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      result.code = code;
      result.signal = signal;
      resolve();
    });
  });
  timer = setTimeout(() => {
    result.timedOut = true;
    stop();
  }, TOOL_TIMEOUT);

  createInterface({ input: child.stderr }).on('line', (line) => console.error(`  | ${shown(line)}`));
  let driving = Promise.resolve();
  let urlNext = false;
  createInterface({ input: child.stdout }).on('line', (line) => {
    console.log(`  | ${shown(line)}`);
    if (urlNext && line.trim()) {
      urlNext = false;
      result.drove = true;
      driving = drive(line.trim(), callback).catch((err) => {
        result.error = err;
        stop();
      });
    } else if (URL_FOLLOWS.test(line)) {
      urlNext = true;
    }
  });

  return exited.then(() => driving).then(() => {
    if (result.error) throw result.error;
    return result;
  });
}

// shown is a line of the tool's output as we print it: URLs without their
// query, and tallies ("3 passed, 0 failed") reworded so that CI logs do not
// read them as this step's result; the baseline check below decides.
function shown(line) {
  return line
    .replace(/(https?:\/\/[^\s'"?#]+)[?#][^\s'"]*/g, '$1?…')
    .replace(/([0-9]+) passed, ([0-9]+) failed/g, '$1 ok, $2 not ok');
}

// drive plays the user's browser from the authorization URL to the tool's
// callback.
async function drive(authURL, callback) {
  let u;
  try {
    u = new URL(authURL);
  } catch {
    throw new Failure(`the line after "Access the following URL…" is not a URL: "${shown(authURL)}"`);
  }
  check(urlPath(u) === `${base}/oauth/authorize`, `the tool's authorization URL is ${urlPath(u)}, want ${base}/oauth/authorize`);
  check(u.searchParams.get('redirect_uri') === callback,
    `the tool's authorization URL has redirect_uri=${u.searchParams.get('redirect_uri')}, want ${callback}`);
  const sent = [...u.searchParams.keys()].sort().join(', ');
  ok(`the tool's authorization URL: /oauth/authorize with ${sent}`);

  await withChromium({ failureShot: join(outDir, 'browser-failure.png') }, async (context) => {
    // The tool starts listening as it prints the URL: its callback is
    // fetched here, and tried again while nothing answers yet.
    await context.route((r) => urlPath(r) === callback, async (route) => {
      for (let i = 0; ; i++) {
        try {
          await route.fulfill({ response: await route.fetch() });
          return;
        } catch (err) {
          if (i >= 20) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    });
    const page = context.pages()[0] ?? await context.newPage();
    const consent = await page.goto(u.href);
    check(consent, 'GET /oauth/authorize gave no response');
    check(consent.status() === 200 && await page.title() === UI.consent.title,
      `GET /oauth/authorize answered ${consent.status()} "${await page.title()}", want the consent page`);
    const landed = await allowAndPick(page, { base, user });
    const at = new URL(landed.url());
    expectCode(at, { redirectUri: callback, base, state: u.searchParams.get('state'), who: 'the tool' });
    ok(`picked "${user.name}" → /auth/callback → the tool's callback with ${[...at.searchParams.keys()].sort().join(', ')}`);
    check(landed.status() === 200, `the tool's callback answered ${landed.status()}`);
    ok(`the tool's callback answered 200 ("${(await page.locator('body').innerText()).trim().slice(0, 60)}")`);
  });
}

// readResults reads the checks.json of each scenario directory the run
// made in OUT_DIR (those not there before).
function readResults(before) {
  const results = new Map(); // scenario → checks
  const dirs = existsSync(outDir) ? readdirSync(outDir).filter((d) => !before.has(d)) : [];
  for (const d of dirs.sort()) {
    const m = RESULT_DIR.exec(d);
    const file = join(outDir, d, 'checks.json');
    if (!m || !existsSync(file)) continue;
    check(!results.has(m[1]), `two result directories for scenario ${m[1]} in ${outDir}`);
    const checks = JSON.parse(readFileSync(file, 'utf8'));
    check(Array.isArray(checks), `${file} is not a list of checks`);
    results.set(m[1], checks);
  }
  return results;
}

// compare prints the check table and holds the results against the
// baseline; problems are those found before.
function compare(results, scenarios, expected, run, problems) {
  if (results.size === 0) problems.push(`the tool wrote no checks.json under ${outDir}`);
  const rows = [];
  const order = [...scenarios.filter((x) => results.has(x)), ...[...results.keys()].filter((x) => !scenarios.includes(x))];
  for (const scenario of order) {
    for (const c of results.get(scenario)) rows.push({ key: `${scenario}:${c.id}`, scenario, ...c });
  }
  const width = Math.max(...rows.map((r) => r.key.length), 'check'.length);
  if (rows.length) console.log(`\n  ${'check'.padEnd(width)}  status    expected`);
  for (const r of rows) {
    const note = expected.has(r.key) ? `listed: ${expected.get(r.key)}` : '';
    console.log(`  ${r.key.padEnd(width)}  ${r.status.padEnd(8)}  ${note}`);
    if (r.status !== 'SUCCESS' && r.errorMessage) console.log(`  ${''.padEnd(width)}    ${shown(String(r.errorMessage))}`);
  }
  console.log('');

  for (const s of scenarios) {
    if (!results.has(s)) problems.push(`scenario ${s} wrote no checks.json`);
  }
  for (const s of results.keys()) {
    if (!scenarios.includes(s)) problems.push(`results for ${s}, which \`conformance list --authorization\` does not name`);
  }
  const byStatus = (st) => rows.filter((r) => r.status === st);
  const skipped = byStatus('SKIPPED');
  if (skipped.length) problems.push(`SKIPPED: ${skipped.map((r) => `${r.key} (${r.errorMessage ?? 'no reason given'})`).join(', ')}`);
  const unexpectedFailures = byStatus('FAILURE').filter((r) => !expected.has(r.key));
  if (unexpectedFailures.length) problems.push(`failed, not in the baseline: ${unexpectedFailures.map((r) => r.key).join(', ')}`);
  const unexpectedWarnings = byStatus('WARNING').filter((r) => !expected.has(r.key));
  if (unexpectedWarnings.length) problems.push(`warned, not in the baseline: ${unexpectedWarnings.map((r) => r.key).join(', ')}`);
  for (const [key, reason] of expected) {
    const hits = rows.filter((r) => r.key === key);
    if (hits.length === 0) problems.push(`the baseline lists ${key} (${reason}), which did not run: stale baseline`);
    else if (hits.every((r) => r.status === 'SUCCESS')) problems.push(`the baseline lists ${key}, which now passes: stale baseline`);
  }
  // The tool exits 1 exactly when a check FAILED.
  const failed = byStatus('FAILURE').length;
  if (!run.timedOut && (run.code === 0 || run.code === 1) && run.code !== (failed ? 1 : 0)) {
    problems.push(`the tool exited ${run.code} although ${failed} check(s) failed`);
  }

  check(problems.length === 0, `against the baseline ${expectedPath}:\n    ${problems.join('\n    ')}`);
  const listed = rows.filter((r) => expected.has(r.key)).length;
  ok(`${rows.length} checks in ${results.size} scenarios: ${byStatus('SUCCESS').length} SUCCESS, ` +
    `${listed} as the baseline lists, none SKIPPED`);
}

const t0 = Date.now();
try {
  await main();
  console.log(`conformance authorization: all ${done.length} steps ok (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
} catch (err) {
  if (err instanceof Failure) {
    console.error(`conformance authorization FAILED: ${err.message}`);
  } else {
    console.error(`conformance authorization FAILED with an error: ${err?.stack ?? err}`);
  }
  process.exit(1);
}
