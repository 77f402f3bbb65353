// Browser sign-in test, run by .ci/browser-signin.sh against a dev-mode
// handler at BASE_URL. A real Chromium (Debian's, driven by playwright-core)
// goes to /auth/login, picks the demo reader on the Entra stand-in's page, and
// lands on the page with the one-time code. The test checks that page
// (title, heading, code, Copy button, CSP, no console errors or CSP
// violations, nothing loaded from outside loopback), saves a screenshot,
// then trades the code at /auth/exchange and lists the reader's MCP tools,
// which must be the golden file's (handler/tools/toolstest).
//
// Environment: BASE_URL, OUT_DIR, CHROMIUM (executable). Tokens are never
// printed.

import { join } from 'node:path';

import {
  Failure, UI, check, demoUser, done, expectCSP, expectHeading, expectPicker, isLocal, need, ok, pickAccount,
  urlPath, withChromium,
} from './lib.mjs';

const base = need('BASE_URL').replace(/\/$/, '');
const outDir = need('OUT_DIR');

const reader = demoUser('reader');
const STEP_TIMEOUT = 15_000;

// Per-page problems the browser reports: console errors (CSP violations
// are logged as such), uncaught exceptions, securitypolicyviolation events
// and failed requests.
const problems = [];
const requests = [];

function main() {
  return withChromium({ failureShot: join(outDir, 'failure.png'), stepTimeout: STEP_TIMEOUT }, run);
}

async function run(context) {
  // The page's own CSP must not block this: Playwright injects init
  // scripts and bindings through DevTools, outside the page's policy.
  await context.exposeBinding('__reportCSPViolation', ({ page }, v) => {
    problems.push(`CSP violation on ${urlPath(page.url())}: ${v.directive} blocked ${v.blocked || '(inline)'}`);
  });
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__reportCSPViolation({ directive: e.violatedDirective, blocked: e.blockedURI });
    });
  });

  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console error on ${urlPath(page.url())}: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error on ${urlPath(page.url())}: ${err.message}`));
  page.on('requestfailed', (req) => {
    problems.push(`request failed: ${req.method()} ${urlPath(req.url())}: ${req.failure()?.errorText}`);
  });
  page.on('request', (req) => requests.push(req.url()));

  // 1. /auth/login redirects to the stand-in's account picker.
  const pickResp = await page.goto(`${base}/auth/login`);
  check(pickResp, 'GET /auth/login gave no response');
  const pickURL = await expectPicker(page, pickResp, { base });
  await expectHeading(page, UI.picker.heading);
  expectCSP(pickResp, 'account picker');
  ok(`/auth/login → stand-in account picker at ${pickURL.origin}`);
  await page.screenshot({ path: join(outDir, 'account-picker.png'), fullPage: true });

  // 2. Pick the reader; the form posts, the stand-in redirects to
  //    /auth/callback, which serves the code page.
  // The walk every browser test shares: the click, the stand-in's refusal
  // told apart, the way back through /auth/callback.
  const codeResp = await pickAccount(page, { base, user: reader, problems, pickURL });
  const landed = new URL(codeResp.url());
  check(landed.origin === base && landed.pathname === '/auth/callback',
    `after the sign-in the browser is at ${urlPath(codeResp.url())}, want ${base}/auth/callback`);
  check(codeResp.status() === 200, `/auth/callback answered ${codeResp.status()}, want 200`);
  ok(`clicked "${reader.name}" → /auth/callback (200)`);

  // 3. The code page.
  check(await page.title() === UI.code.title, `code page title is "${await page.title()}", want "${UI.code.title}"`);
  await expectHeading(page, UI.code.heading);
  const codeEl = page.locator('#code');
  check(await codeEl.isVisible(), 'the code page shows no visible #code');
  const code = (await codeEl.textContent() ?? '').trim();
  check(/^[A-Za-z0-9._~-]{16,}$/.test(code), `#code does not hold a plausible one-time code (${code.length} characters)`);
  const curl = await page.locator('pre').first().textContent();
  check(curl.includes(`${base}/auth/exchange`) && curl.includes(code),
    'the curl example does not name this server\'s /auth/exchange with the code');
  expectCSP(codeResp, 'code page');
  ok(`code page: title and heading "${UI.code.title}", #code holds a ${code.length}-character code`);

  // 4. Copy. http://127.0.0.1 is a secure context, so navigator.clipboard
  //    works once the origin has the permissions.
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  const copied = page.locator('#copied');
  check(await copied.isHidden(), '#copied is visible before Copy was clicked');
  await page.locator('#copy').click();
  try {
    await copied.waitFor({ state: 'visible', timeout: 5_000 });
  } catch {
    throw new Failure('#copied ("Copied.") did not become visible within 5 s of clicking Copy');
  }
  const clip = await page.evaluate(() => navigator.clipboard.readText());
  check(clip === code, 'the clipboard does not hold the code after Copy');
  ok('Copy: "Copied." shown and the clipboard holds the code');

  const shot = join(outDir, 'signin-code.png');
  await page.screenshot({ path: shot, fullPage: true });
  ok(`screenshot ${shot}`);

  // 5. No errors or CSP violations on either page, nothing fetched from
  //    outside loopback. (Checked before the exchange: a code spent is
  //    not a page problem.)
  check(problems.length === 0, `the browser reported problems:\n    ${problems.join('\n    ')}`);
  const foreign = requests.filter((u) => !isLocal(new URL(u)));
  check(foreign.length === 0, `the pages loaded from outside loopback: ${foreign.join(', ')}`);
  ok(`no console errors, page errors or CSP violations; ${requests.length} requests, all to loopback`);

  // 6. Trade the code for tokens, then list the reader's tools.
  const exRes = await fetch(`${base}/auth/exchange`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ auth_code: code }),
  });
  const exText = await exRes.text();
  check(exRes.status === 200, `POST /auth/exchange answered ${exRes.status}: ${exText.slice(0, 300)}`);
  let tokens;
  try {
    tokens = JSON.parse(exText);
  } catch {
    throw new Failure('POST /auth/exchange did not answer JSON');
  }
  for (const [k, type] of [['access_token', 'string'], ['token_type', 'string'], ['expires_in', 'number'],
    ['scope', 'string'], ['refresh_token', 'string']]) {
    check(typeof tokens[k] === type && tokens[k] !== '' && tokens[k] !== 0,
      `the /auth/exchange answer has no ${type} ${k}`);
  }
  check(tokens.token_type.toLowerCase() === 'bearer', `token_type is "${tokens.token_type}", want Bearer`);
  check(tokens.expires_in > 0, `expires_in is ${tokens.expires_in}`);
  ok(`POST /auth/exchange: ${tokens.token_type} token for ${tokens.expires_in} s, scope "${tokens.scope}", refresh token present`);

  const mcpRes = await fetch(`${base}/mcp`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${tokens.access_token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
  });
  const mcpText = await mcpRes.text();
  check(mcpRes.status === 200, `POST /mcp tools/list answered ${mcpRes.status}: ${mcpText.slice(0, 300)}`);
  let rpc;
  try {
    rpc = JSON.parse(mcpText);
  } catch {
    throw new Failure(`POST /mcp tools/list did not answer JSON: ${mcpText.slice(0, 300)}`);
  }
  check(!rpc.error, `tools/list returned an error: ${JSON.stringify(rpc.error)}`);
  const names = (rpc.result?.tools ?? []).map((t) => t.name);
  check(JSON.stringify(names) === JSON.stringify(reader.tools),
    `the reader's tools are [${names.join(', ')}], want [${reader.tools.join(', ')}] (the golden tools-per-role file)`);
  ok(`POST /mcp tools/list as the reader: ${names.join(', ')}`);

  const again = await fetch(`${base}/auth/exchange`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ auth_code: code }),
  });
  check(again.status >= 400 && again.status < 500, `a second POST /auth/exchange with the same code answered ${again.status}, want 4xx`);
  ok(`the code is one-time: a second exchange answers ${again.status}`);
}


const t0 = Date.now();
try {
  await main();
  console.log(`browser sign-in: all ${done.length} checks ok (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
} catch (err) {
  if (err instanceof Failure) {
    console.error(`browser sign-in FAILED: ${err.message}`);
  } else {
    console.error(`browser sign-in FAILED with an error: ${err?.stack ?? err}`);
  }
  process.exit(1);
}
