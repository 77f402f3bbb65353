// Browser test of the OAuth authorization-server front, against a dev-mode
// handler at BASE_URL. An MCP client built on the official TypeScript SDK
// (@modelcontextprotocol/sdk) registers itself and gets the authorization
// URL from the 401; a real Chromium (Debian's, driven by playwright-core)
// opens it. Allow path: the consent page (title, heading, client name,
// redirect host, CSP; screenshot consent.png), "Allow", "Alex All" on the
// Entra stand-in's account picker, and back to the client's redirect URI, a
// small HTTP server of this script on a loopback port; the SDK trades the
// code and calls whoami and create_task with the token. Deny path: a second
// client, registered afresh, in a fresh browser profile (so no remembered
// consent) clicks "Deny", and the client gets error=access_denied with its
// state and iss. Neither path may log console errors or CSP violations or
// load anything from outside loopback.
//
// Environment: BASE_URL, OUT_DIR, CHROMIUM (executable), PLAYWRIGHT_DIR (the
// npm prefix holding playwright-core), SDK_DIR (the npm prefix holding
// @modelcontextprotocol/sdk). Tokens and codes are never printed.

import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { join } from 'node:path';

import {
  Failure, MemoryProvider, argumentsFor, check, clickAndLand, done, expectCSP, expectHeading, isLocal, isLoopback, need, ok, pageError,
  structured, urlPath, withChromium, withoutQueries,
} from './lib.mjs';

const base = need('BASE_URL').replace(/\/$/, '');
const mcpURL = `${base}/mcp`;
const outDir = need('OUT_DIR');
const chromiumPath = need('CHROMIUM');
const { chromium } = createRequire(join(need('PLAYWRIGHT_DIR'), 'node_modules', '/'))('playwright-core');
const sdk = createRequire(join(need('SDK_DIR'), 'node_modules', '/'));
// The package's exports map sends "./*" to dist/cjs/* for require: all
// three come from the same (CommonJS) build, so instanceof works across them.
const { UnauthorizedError } = sdk('@modelcontextprotocol/sdk/client/auth.js');
const { Client } = sdk('@modelcontextprotocol/sdk/client/index.js');
const { StreamableHTTPClientTransport } = sdk('@modelcontextprotocol/sdk/client/streamableHttp.js');

const USER_NAME = 'Alex All';
const STEP_TIMEOUT = 15_000;
const SIGNED_IN = 'Signed in; you can close this tab';
const NOT_SIGNED_IN = 'Not signed in; you can close this tab';

// Per-page problems the browser reports: console errors (CSP violations
// are logged as such), uncaught exceptions, securitypolicyviolation events
// and failed requests.
const problems = [];
const requests = [];

async function main() {
  const callback = await startCallbackServer();
  try {
    const allowed = await allowPath(callback);
    await denyPath(callback, allowed);
  } finally {
    await callback.close();
  }
}

// newClient makes a provider for a client that redirects to the callback
// server, and lets the SDK hit the 401, register it and build the
// authorization URL.
async function newClient(callback, label) {
  const clientName = `browser-oauth ${label} ${randomBytes(3).toString('hex')}`;
  const provider = new MemoryProvider({
    redirectUrl: callback.url,
    clientMetadata: {
      client_name: clientName,
      redirect_uris: [callback.url],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    },
  });
  const transport = new StreamableHTTPClientTransport(new URL(mcpURL), { authProvider: provider });
  const client = new Client({ name: 'browser-oauth', version: '1.0.0' });
  let error;
  try {
    await client.connect(transport);
  } catch (err) {
    error = err;
  }
  check(error, 'connecting with no token succeeded; want a 401 and the OAuth flow');
  check(error instanceof UnauthorizedError,
    `connecting with no token ended in ${error.constructor?.name}: ${error.message}; want the SDK's UnauthorizedError`);
  const info = provider.clientInformation();
  check(info?.client_id && !info.client_secret, 'the SDK saved no public client registration');
  const authURL = provider.authorizationUrls.at(-1);
  check(authURL, 'the SDK sent the user nowhere (redirectToAuthorization was not called)');
  check(urlPath(authURL) === `${base}/oauth/authorize`, `the authorization URL is ${urlPath(authURL)}, want ${base}/oauth/authorize`);
  check(authURL.searchParams.get('client_id') === info.client_id && authURL.searchParams.get('redirect_uri') === callback.url &&
    authURL.searchParams.get('state') === provider.states.at(-1) && authURL.searchParams.get('resource') === mcpURL,
  'the authorization URL does not carry the client_id, redirect_uri, state and resource');
  ok(`${label}: the SDK got the 401, registered "${clientName}" and built the authorization URL`);
  return { provider, transport, clientName, clientId: info.client_id, authURL };
}

async function allowPath(callback) {
  const c = await newClient(callback, 'allow');
  let code;
  await withBrowser('allow', async (context, page) => {
    await consentPage(page, c, callback, join(outDir, 'consent.png'));

    const allow = page.getByRole('button', { name: 'Allow', exact: true });
    check(await allow.count() === 1, 'the consent page has no single "Allow" button');
    const pickResp = await clickAndLand(page, allow, '"Allow"', problems);
    const pickURL = new URL(pickResp.url());
    check(pickURL.origin !== base && isLoopback(pickURL) && pickURL.pathname.endsWith('/oauth2/v2.0/authorize'),
      `after "Allow" the browser is at ${urlPath(pickURL)}${await pageError(page)}, want the Entra stand-in's account picker`);
    check(pickResp.status() === 200, `the account picker answered ${pickResp.status()}, want 200`);
    check(await page.title() === 'Pick an account · devidp', `account picker title is "${await page.title()}"`);
    ok(`clicked "Allow" → stand-in account picker at ${pickURL.origin}`);

    const user = page.getByRole('button', { name: new RegExp(USER_NAME) });
    check(await user.count() === 1, `the account picker has no single "${USER_NAME}" button`);
    const before = requests.length;
    const landResp = await clickAndLand(page, user, `"${USER_NAME}"`, problems);
    const landed = new URL(landResp.url());
    if (landed.origin === pickURL.origin) {
      throw new Failure(`the Entra stand-in refused the sign-in (${landResp.request().method()} ${landed.pathname} ` +
        `answered ${landResp.status()}: "${await page.title()}"${await pageError(page)}); ` +
        `Chromium sent the form with Origin: ${landResp.request().headers()['origin'] ?? '(none)'}`);
    }
    check(urlPath(landed) === callback.url,
      `after the sign-in the browser is at ${urlPath(landed)} (${landResp.status()}, "${await page.title()}"${await pageError(page)}), ` +
      `want the client's ${callback.url}`);
    check(requests.slice(before).some((u) => urlPath(u) === `${base}/auth/callback`),
      'the way back to the client did not pass through /auth/callback');
    await expectHeading(page, SIGNED_IN);
    const hit = callback.hits.at(-1);
    check(hit && !hit.error, `the client got error=${hit?.error}: ${hit?.error_description ?? ''}`);
    check(hit.code, 'the client got no code');
    check(hit.state === c.provider.states.at(-1), 'the client got back a state other than the one it sent');
    check(hit.iss === base, `the client got iss=${hit.iss}, want ${base}`);
    ok(`clicked "${USER_NAME}" → /auth/callback → the client's callback page, with code, its state and iss=${base}`);
    code = hit.code;

    expectNoProblems();
  });

  await c.transport.finishAuth(code);
  const tokens = c.provider.tokens();
  check(tokens?.access_token && tokens.refresh_token && (tokens.token_type ?? '').toLowerCase() === 'bearer',
    'finishAuth saved no bearer access token and refresh token');
  ok(`finishAuth: ${tokens.token_type} token for ${tokens.expires_in} s and a refresh token`);

  const transport = new StreamableHTTPClientTransport(new URL(mcpURL), { authProvider: c.provider });
  const client = new Client({ name: 'browser-oauth', version: '1.0.0' });
  await client.connect(transport);
  try {
    const me = structured(await client.callTool({ name: 'whoami', arguments: {} }), 'whoami');
    check(me.name === USER_NAME, `whoami says name "${me.name}", want "${USER_NAME}"`);
    const { tools } = await client.listTools();
    const create = tools.find((t) => t.name === 'create_task');
    check(create, `the tools of ${USER_NAME} lack create_task: [${tools.map((t) => t.name).join(', ')}]`);
    const title = `browser-oauth ${new Date().toISOString()}`;
    const task = structured(await client.callTool({ name: 'create_task', arguments: argumentsFor(create.inputSchema, title) }),
      'create_task');
    check(task.id && task.title === title, `create_task answered ${JSON.stringify(task).slice(0, 300)}`);
    ok(`tools/call with the token: whoami is ${USER_NAME}, create_task made task ${task.id}`);
  } finally {
    await client.close();
  }
  return c;
}

async function denyPath(callback, allowed) {
  const c = await newClient(callback, 'deny');
  check(c.clientId !== allowed.clientId, 'the second registration answered the first client_id');
  await withBrowser('deny', async (context, page) => {
    await consentPage(page, c, callback, null);
    const deny = page.getByRole('button', { name: 'Deny', exact: true });
    check(await deny.count() === 1, 'the consent page has no single "Deny" button');
    const landResp = await clickAndLand(page, deny, '"Deny"', problems);
    const landed = new URL(landResp.url());
    check(urlPath(landed) === callback.url,
      `after "Deny" the browser is at ${urlPath(landed)} (${landResp.status()}, "${await page.title()}"${await pageError(page)}), ` +
      `want the client's ${callback.url}`);
    await expectHeading(page, NOT_SIGNED_IN);
    const hit = callback.hits.at(-1);
    check(hit.error === 'access_denied', `the client got error=${hit.error ?? '(none)'}, want access_denied`);
    check(!hit.code, 'the client got a code although the user clicked "Deny"');
    check(hit.state === c.provider.states.at(-1), 'the client got back a state other than the one it sent');
    check(hit.iss === base, `the client got iss=${hit.iss}, want ${base}`);
    ok(`clicked "Deny" → the client's callback page with error=access_denied, its state and iss=${base}`);
    expectNoProblems();
  });
  check(!c.provider.tokens(), 'the denied client holds tokens');
}

// consentPage opens the authorization URL in the browser and checks the
// consent page; shot is where to save its screenshot, or null.
async function consentPage(page, c, callback, shot) {
  const resp = await page.goto(c.authURL.href);
  check(resp, 'GET /oauth/authorize gave no response');
  check(urlPath(page.url()) === `${base}/oauth/authorize`,
    `the authorization URL led to ${urlPath(page.url())} ("${await page.title()}"), want the consent page at ${base}/oauth/authorize`);
  check(resp.status() === 200, `the consent page answered ${resp.status()}, want 200${await pageError(page)}`);
  check(await page.title() === 'Authorize access', `consent page title is "${await page.title()}", want "Authorize access"`);
  await expectHeading(page, 'Authorize access');
  const shown = {};
  for (const id of ['client-name', 'client-host', 'redirect-host', 'scope']) {
    const el = page.locator(`#${id}`);
    check(await el.count() === 1 && await el.isVisible(), `the consent page shows no single visible #${id}`);
    shown[id] = (await el.textContent() ?? '').trim();
  }
  check(shown['client-name'] === c.clientName, `#client-name shows "${shown['client-name']}", want "${c.clientName}"`);
  check(shown['redirect-host'] === `127.0.0.1:${callback.port}`,
    `#redirect-host shows "${shown['redirect-host']}", want "127.0.0.1:${callback.port}"`);
  expectCSP(resp, 'consent page');
  // A consent page in a frame of another site could be clicked through.
  const h = resp.headers();
  const csp = h['content-security-policy'] ?? '';
  check(/(^|;)\s*frame-ancestors 'none'/.test(csp) || (h['x-frame-options'] ?? '').toUpperCase() === 'DENY',
    'the consent page may be framed: no CSP frame-ancestors \'none\' and no X-Frame-Options: DENY');
  ok(`consent page: "Authorize access", client "${shown['client-name']}" (${shown['client-host']}), ` +
    `redirect host ${shown['redirect-host']}, scope "${shown.scope}", CSP with default-src 'none', not frameable`);
  if (shot) {
    await page.screenshot({ path: shot, fullPage: true });
    ok(`screenshot ${shot}`);
  }
}

// withBrowser runs fn in a fresh Chromium profile, and saves a screenshot
// as oauth-<label>-failure.png when fn fails.
function withBrowser(label, fn) {
  return withChromium({ chromium, executablePath: chromiumPath, failureShot: join(outDir, `oauth-${label}-failure.png`), stepTimeout: STEP_TIMEOUT },
    async (context) => fn(context, await instrument(context)));
}

async function instrument(context) {
  // The page's own CSP must not block this: Playwright injects init
  // scripts and bindings through DevTools, outside the page's policy.
  await context.exposeBinding('__reportCSPViolation', ({ page }, v) => {
    problems.push(`CSP violation on ${urlPath(page.url())}: ${v.directive} blocked ${v.blocked ? urlPath(v.blocked) : '(inline)'}`);
  });
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__reportCSPViolation({ directive: e.violatedDirective, blocked: e.blockedURI });
    });
  });

  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console error on ${urlPath(page.url())}: ${withoutQueries(msg.text())}`);
  });
  page.on('pageerror', (err) => problems.push(`page error on ${urlPath(page.url())}: ${withoutQueries(err.message)}`));
  page.on('requestfailed', (req) => {
    problems.push(`request failed: ${req.method()} ${urlPath(req.url())}: ${req.failure()?.errorText}`);
  });
  page.on('request', (req) => requests.push(req.url()));
  return page;
}


function expectNoProblems() {
  check(problems.length === 0, `the browser reported problems:\n    ${problems.join('\n    ')}`);
  const foreign = requests.filter((u) => !isLocal(new URL(u)));
  check(foreign.length === 0, `the pages loaded from outside loopback: ${foreign.map(urlPath).join(', ')}`);
  ok(`no console errors, page errors or CSP violations; ${requests.length} requests so far, all to loopback`);
}


// startCallbackServer is the client's redirect URI: it records the query
// of each visit (code, state, iss, error) and answers a small page.
async function startCallbackServer() {
  const hits = [];
  const server = createServer((req, res) => {
    const u = new URL(req.url, 'http://127.0.0.1');
    if (req.method !== 'GET' || u.pathname !== '/callback') {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found\n');
      return;
    }
    const q = u.searchParams;
    const hit = {};
    for (const k of ['code', 'state', 'iss', 'error', 'error_description']) {
      if (q.has(k)) hit[k] = q.get(k);
    }
    hits.push(hit);
    const said = hit.code && !hit.error ? SIGNED_IN : NOT_SIGNED_IN;
    res.writeHead(200, {
      'Content-Type': 'text/html; charset=utf-8',
      'Cache-Control': 'no-store',
      // img-src data: for the empty icon, which keeps Chromium from asking
      // for /favicon.ico.
      'Content-Security-Policy': "default-src 'none'; img-src data:; frame-ancestors 'none'",
      'Referrer-Policy': 'no-referrer',
    });
    res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">` +
      `<title>${said}</title></head><body><h1>${said}</h1></body></html>\n`);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const port = server.address().port;
  return {
    port,
    url: `http://127.0.0.1:${port}/callback`,
    hits,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(resolve);
    }),
  };
}



const t0 = Date.now();
try {
  await main();
  console.log(`browser OAuth: all ${done.length} checks ok (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
} catch (err) {
  if (err instanceof Failure) {
    console.error(`browser OAuth FAILED: ${err.message}`);
  } else {
    console.error(`browser OAuth FAILED with an error: ${err?.stack ?? err}`);
  }
  process.exit(1);
}
