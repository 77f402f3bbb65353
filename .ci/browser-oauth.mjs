// Browser test of the OAuth authorization-server front, against a dev-mode
// handler at BASE_URL. An MCP client built on the official TypeScript SDK
// (@modelcontextprotocol/sdk) registers itself and gets the authorization
// URL from the 401; a real Chromium (Debian's, driven by playwright-core)
// opens it. Allow path: the consent page (title, heading, client name,
// redirect host, CSP; screenshot consent.png), "Allow", the demo user "all" on the
// Entra stand-in's account picker, and back to the client's redirect URI, a
// small HTTP server of this script on a loopback port; the SDK trades the
// code and calls whoami and create_task with the token. Deny path: a second
// client, registered afresh, in a fresh browser profile (so no remembered
// consent) clicks "Deny", and the client gets error=access_denied with its
// state and iss. Neither path may log console errors or CSP violations or
// load anything from outside loopback.
//
// Environment: BASE_URL, OUT_DIR, CHROMIUM (executable). Tokens and codes
// are never printed.

import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { join } from 'node:path';

import {
  MemoryProvider, UI, allowAndPick, argumentsFor, check, clickAndLand, demoUser, done, expectCode, expectConsentPage,
  expectHeading, isLocal, need, ok, pageError, require, structured, urlPath, withChromium, withoutQueries, Failure,
} from './lib.mjs';

const base = need('BASE_URL').replace(/\/$/, '');
const mcpURL = `${base}/mcp`;
const outDir = need('OUT_DIR');
// The package's exports map sends "./*" to dist/cjs/* for require: all
// three come from the same (CommonJS) build, so instanceof works across them.
const { UnauthorizedError } = require('@modelcontextprotocol/sdk/client/auth.js');
const { Client } = require('@modelcontextprotocol/sdk/client/index.js');
const { StreamableHTTPClientTransport } = require('@modelcontextprotocol/sdk/client/streamableHttp.js');

const user = demoUser('all');
const USER_NAME = user.name;
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
    const landResp = await allowAndPick(page, { base, user, problems });
    await expectHeading(page, SIGNED_IN);
    const hit = callback.hits.at(-1);
    check(hit, 'the client\'s callback server saw no visit');
    code = expectCode(new URL(landResp.url()), { redirectUri: callback.url, base, state: c.provider.states.at(-1) });
    check(hit.code === code, 'the client\'s callback server got another code than the browser carried');
    ok(`clicked "${USER_NAME}" → /auth/callback → the client's callback page, with code, its state and iss=${base}`);

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
    const deny = page.getByRole('button', { name: UI.consent.deny, exact: true });
    const landResp = await clickAndLand(page, deny, `"${UI.consent.deny}"`, problems);
    const landed = new URL(landResp.url());
    check(urlPath(landed) === callback.url,
      `after "${UI.consent.deny}" the browser is at ${urlPath(landed)} (${landResp.status()}, "${await page.title()}"${await pageError(page)}), ` +
      `want the client's ${callback.url}`);
    await expectHeading(page, NOT_SIGNED_IN);
    const hit = callback.hits.at(-1);
    check(hit.error === 'access_denied', `the client got error=${hit.error ?? '(none)'}, want access_denied`);
    check(!hit.code, `the client got a code although the user clicked "${UI.consent.deny}"`);
    check(hit.state === c.provider.states.at(-1), 'the client got back a state other than the one it sent');
    check(hit.iss === base, `the client got iss=${hit.iss}, want ${base}`);
    ok(`clicked "${UI.consent.deny}" → the client's callback page with error=access_denied, its state and iss=${base}`);
    expectNoProblems();
  });
  check(!c.provider.tokens(), 'the denied client holds tokens');
}

// consentPage opens the authorization URL in the browser and checks the
// consent page; shot is where to save its screenshot, or null.
async function consentPage(page, c, callback, shot) {
  const resp = await page.goto(c.authURL.href);
  check(resp, 'GET /oauth/authorize gave no response');
  await expectConsentPage(page, resp, { base, clientName: c.clientName, redirectHost: `127.0.0.1:${callback.port}` });
  if (shot) {
    await page.screenshot({ path: shot, fullPage: true });
    ok(`screenshot ${shot}`);
  }
}

// withBrowser runs fn in a fresh Chromium profile, and saves a screenshot
// as oauth-<label>-failure.png when fn fails.
function withBrowser(label, fn) {
  return withChromium({ failureShot: join(outDir, `oauth-${label}-failure.png`), stepTimeout: STEP_TIMEOUT },
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
