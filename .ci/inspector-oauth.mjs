// The MCP Inspector's own OAuth flow against a dev-mode handler at BASE_URL,
// driven through the Inspector's web UI at INSPECTOR_URL in a real Chromium
// (Debian's, driven by playwright-core), as a user would:
//
//   1. Servers → "Add Servers" → "+ Add manually": transport
//      streamable-http, URL <BASE_URL>/mcp, "Add"; then the server's
//      connect switch;
//   2. the Inspector gets the 401 (an auth challenge naming our Protected
//      Resource Metadata), reads that and our authorization server metadata,
//      registers itself at /oauth/register and sends the browser to
//      /oauth/authorize with PKCE, state, resource and its
//      <INSPECTOR_URL>/oauth/callback;
//   3. our consent page (title, heading, client name as registered,
//      redirect host, CSP, not frameable; screenshot consent.png) → "Allow"
//      → the Entra stand-in's account picker → "Alex All" → /auth/callback
//      → the Inspector's /oauth/callback with code, its state and iss;
//   4. the Inspector trades the code ("Authorization complete"), connects,
//      and its Tools screen lists whoami and create_task (tools.png); whoami
//      run from the UI shows "Alex All" (whoami.png);
//   5. the Inspector's client log (MCP_LOG_FILE) shows every exchange with
//      our server answered as expected.
//
// Our pages (the handler's and the stand-in's) may not log console errors,
// page errors or CSP violations, nor load anything from outside loopback.
// The Inspector's own pages are not ours: what they log (say a web font
// they cannot load offline) is printed as a note and does not fail the test.
//
// Environment: BASE_URL, INSPECTOR_URL, INSPECTOR_TOKEN (its API token),
// INSPECTOR_LOG (its MCP_LOG_FILE), INSPECTOR_VERSION (for messages),
// OUT_DIR, CHROMIUM (executable). Tokens, codes and the API token are never
// printed.

import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import {
  Failure, allowAndPick, arrived, check, demoUser, done, expectCode, expectConsentPage, isLocal, need, ok, urlPath, withChromium,
  withoutQueries,
} from './lib.mjs';

const base = need('BASE_URL').replace(/\/$/, '');
const mcpURL = `${base}/mcp`;
const inspector = need('INSPECTOR_URL').replace(/\/$/, '');
const inspectorOrigin = new URL(inspector).origin;
const inspectorToken = need('INSPECTOR_TOKEN');
const inspectorLog = need('INSPECTOR_LOG');
const inspectorVersion = process.env.INSPECTOR_VERSION ?? '?';
const outDir = need('OUT_DIR');

const user = demoUser('all');
const USER_NAME = user.name;
const SERVER_ID = `tasks-${randomBytes(3).toString('hex')}`;
const CALLBACK = `${inspector}/oauth/callback`;
const PRM = `${base}/.well-known/oauth-protected-resource/mcp`;
const ASM = `${base}/.well-known/oauth-authorization-server`;
const STEP_TIMEOUT = 15_000;
// The OAuth flow starts after the Inspector's backend has tried to connect
// and its page has fetched the metadata and registered: a few round trips.
const FLOW_TIMEOUT = 25_000;

// problems: what our pages reported (console errors, page errors, CSP
// violations, failed requests); notes: the same from the Inspector's pages.
const problems = [];
const notes = [];
// requests: every request, with the URL of the page that made it.
const requests = [];
// fetched: what the Inspector's page asked its backend to fetch
// (POST /api/fetch: the OAuth discovery, registration and token requests),
// in order: {method, url, body}. Only URLs and the registration's
// client_name are ever printed.
const fetched = [];
// challenges: the auth challenges the Inspector's backend handed its page
// (from /api/mcp/connect and /api/mcp/send).
const challenges = [];

async function main() {
  await withBrowser(async (page) => {
    await openInspector(page);
    await addServer(page);
    const auth = await connect(page);
    await consentPage(page, auth);
    await signIn(page, auth);
    await toolsScreen(page);
    await callWhoami(page);
  });
  await clientLog();
}

async function openInspector(page) {
  // The URL the Inspector prints at start-up, with its API token.
  const resp = await page.goto(`${inspector}/?MCP_INSPECTOR_API_TOKEN=${encodeURIComponent(inspectorToken)}`);
  check(resp?.status() === 200, `the Inspector's page answered ${resp?.status()}, want 200`);
  check(await page.title() === 'MCP Inspector', `the Inspector's page title is "${await page.title()}", want "MCP Inspector"`);
  await page.getByRole('heading', { name: 'Servers', exact: true }).waitFor();
  ok(`the MCP Inspector ${inspectorVersion} web UI at ${inspector}: "Servers"`);
}

async function addServer(page) {
  await page.getByRole('button', { name: 'Add Servers' }).click();
  await page.getByRole('menuitem', { name: /Add manually/ }).click();
  const dialog = page.getByRole('dialog', { name: 'Add server' });
  await dialog.waitFor();
  await dialog.getByRole('textbox', { name: 'Server ID' }).fill(SERVER_ID);
  await dialog.getByRole('textbox', { name: 'Transport' }).click();
  await page.getByRole('option', { name: 'streamable-http', exact: true }).click();
  const url = dialog.getByRole('textbox', { name: 'URL' });
  await url.fill(mcpURL);
  await dialog.getByRole('button', { name: 'Add', exact: true }).click();
  try {
    await dialog.waitFor({ state: 'hidden' });
  } catch {
    const said = (await dialog.innerText().catch(() => '')).replace(/\s+/g, ' ').trim();
    throw new Failure(`the "Add server" dialog did not close after "Add": "${said.slice(0, 300)}"`);
  }
  await connectSwitch(page).waitFor({ state: 'attached' });
  check(await connectSwitch(page).isEnabled(), `the connect switch of "${SERVER_ID}" is disabled`);
  ok(`added server "${SERVER_ID}": streamable-http, ${mcpURL}`);
}

function connectSwitch(page) {
  return page.getByRole('switch', { name: `Connect or disconnect "${SERVER_ID}"`, exact: true });
}

// connect flips the server's switch and follows the Inspector to our
// authorization endpoint. It returns what the flow needs later.
async function connect(page) {
  const sw = connectSwitch(page);
  const authorize = `${base}/oauth/authorize`;
  let resp;
  try {
    [resp] = await Promise.all([
      page.waitForResponse((r) => r.request().isNavigationRequest() && r.request().frame() === page.mainFrame() &&
        urlPath(r.url()) === authorize, { timeout: FLOW_TIMEOUT }),
      // Mantine draws the switch over a visually hidden <input role=switch>
      // that has its accessible name: Playwright would find it outside the
      // viewport, so the click is forced (addServer checked it is enabled).
      sw.click({ force: true }),
    ]);
    await arrived(page, resp);
  } catch (err) {
    throw new Failure(`connecting did not send the browser to ${authorize} within ${FLOW_TIMEOUT / 1000} s ` +
      `(the browser is at ${urlPath(page.url())}${await alerts(page)}; the Inspector fetched: ` +
      `${fetched.map((f) => `${f.method} ${urlPath(f.url)}`).join(', ') || 'nothing'}): ${err.message.split('\n')[0]}`);
  }

  // The Inspector got the 401 and read our metadata before registering.
  const challenge = challenges[0];
  check(challenge, 'the Inspector\'s backend handed its page no auth challenge before the OAuth flow');
  check(challenge.raw?.httpStatus === 401, `the auth challenge was for HTTP ${challenge.raw?.httpStatus}, want 401`);
  check(challenge.resourceMetadataUrl === PRM,
    `the auth challenge names resource metadata ${challenge.resourceMetadataUrl ?? '(none)'}, want ${PRM}`);
  const order = [['GET', PRM], ['GET', ASM], ['POST', `${base}/oauth/register`]].map(([m, u]) =>
    fetched.findIndex((f) => f.method === m && urlPath(f.url) === u));
  check(order.every((i) => i >= 0) && order[0] < order[1] && order[1] < order[2],
    `the Inspector did not fetch the resource metadata, the authorization server metadata and /oauth/register in that order: ` +
    `${fetched.map((f) => `${f.method} ${urlPath(f.url)}`).join(', ')}`);
  let registration;
  try {
    registration = JSON.parse(fetched[order[2]].body);
  } catch {
    throw new Failure('the Inspector\'s registration request has no JSON body');
  }
  check(registration.redirect_uris?.includes(CALLBACK),
    `the Inspector registered redirect URIs ${JSON.stringify(registration.redirect_uris)}, want ${CALLBACK}`);
  ok(`the Inspector got the 401 (resource_metadata ${urlPath(PRM)}), read both metadata documents and ` +
    `registered "${registration.client_name}" with redirect URI ${CALLBACK}`);

  const u = new URL(resp.url());
  const q = u.searchParams;
  check(resp.status() === 200, `GET /oauth/authorize answered ${resp.status()}, want 200 (the consent page)`);
  check(q.get('response_type') === 'code', `the authorization URL has response_type=${q.get('response_type')}, want code`);
  check(q.get('client_id'), 'the authorization URL has no client_id');
  check(q.get('redirect_uri') === CALLBACK, `the authorization URL has redirect_uri=${q.get('redirect_uri')}, want ${CALLBACK}`);
  check(q.get('code_challenge') && q.get('code_challenge_method') === 'S256',
    'the authorization URL has no S256 PKCE code_challenge');
  check(q.get('state'), 'the authorization URL has no state');
  check(q.get('resource') === mcpURL, `the authorization URL has resource=${q.get('resource')}, want ${mcpURL}`);
  ok(`connect → ${authorize} with client_id, PKCE S256, state, resource ${mcpURL} and redirect_uri ${CALLBACK}`);
  return { resp, clientName: registration.client_name, state: q.get('state') };
}

async function consentPage(page, auth) {
  await expectConsentPage(page, auth.resp, { base, clientName: auth.clientName, redirectHost: new URL(inspector).host });
  const shot = join(outDir, 'consent.png');
  await page.screenshot({ path: shot, fullPage: true });
  ok(`screenshot ${shot}`);
}

async function signIn(page, auth) {
  const landResp = await allowAndPick(page, { base, user, problems, notOn: [inspectorOrigin] });
  expectCode(new URL(landResp.url()), { redirectUri: CALLBACK, base, state: auth.state, who: 'the Inspector' });
  ok(`clicked "${USER_NAME}" → /auth/callback → ${CALLBACK}, with code, its state and iss=${base}`);
  expectNoProblems();

  // The Inspector's page trades the code and says so.
  const complete = page.getByRole('alert').filter({ hasText: 'Authorization complete' });
  try {
    await complete.first().waitFor({ timeout: FLOW_TIMEOUT });
  } catch {
    throw new Failure(`the Inspector did not say "Authorization complete" within ${FLOW_TIMEOUT / 1000} s` +
      `${await alerts(page)} (the browser is at ${urlPath(page.url())})`);
  }
  const token = fetched.findIndex((f) => f.method === 'POST' && urlPath(f.url) === `${base}/oauth/token`);
  check(token >= 0, `the Inspector said "Authorization complete" without fetching /oauth/token; it fetched: ` +
    `${fetched.map((f) => `${f.method} ${urlPath(f.url)}`).join(', ')}`);
  await waitFor(() => connectSwitch(page).isChecked(), FLOW_TIMEOUT,
    async () => `the Inspector did not connect to "${SERVER_ID}"${await alerts(page)}`);
  ok(`the Inspector traded the code at /oauth/token: "Authorization complete", "${SERVER_ID}" connected`);
}

async function toolsScreen(page) {
  // The header's segmented control: Servers | Tools.
  await page.getByRole('banner').getByText('Tools', { exact: true }).click();
  // The demo user's tools, as the golden tools-per-role file lists them.
  const heading = page.getByRole('heading', { name: `Tools (${user.tools.length})`, exact: true });
  try {
    await heading.waitFor();
  } catch {
    const other = await page.getByRole('heading', { name: /^Tools \(\d+\)$/ }).allTextContents().catch(() => []);
    throw new Failure(`the Inspector's Tools screen shows no heading "Tools (${user.tools.length})"` +
      `${other.length ? ` but "${other.join('", "')}"` : ''}`);
  }
  // The screens cross-fade: wait for the Servers screen to be gone.
  await page.getByRole('heading', { name: 'Servers', exact: true }).waitFor({ state: 'hidden' });
  for (const name of user.tools) {
    // Each tool is a button named by its title and then its name, and
    // then whatever badge the Inspector adds (its schema-portability
    // warnings about the demo upstream's generated output schema).
    const button = page.getByRole('button', { name: new RegExp(`(^|\\s)${name.replaceAll('.', '\\.')}($|\\s)`) });
    await button.first().waitFor().catch(() => {});
    check(await button.count() === 1, `the Inspector's tools list has no single ${name}`);
  }
  const listed = user.tools;
  const shot = join(outDir, 'tools.png');
  await page.screenshot({ path: shot, fullPage: true });
  ok(`the Inspector's Tools screen: "${(await heading.textContent()).trim()}", with ${listed.join(', ')}; screenshot ${shot}`);
}

async function callWhoami(page) {
  await page.getByRole('button', { name: /(^|\s)whoami$/ }).click();
  await page.getByRole('button', { name: 'Execute Tool', exact: true }).click();
  await page.getByRole('heading', { name: 'Results', exact: true }).waitFor();
  const said = page.getByText(new RegExp(`"name":\\s*"${USER_NAME}"`));
  try {
    await said.first().waitFor();
  } catch {
    throw new Failure(`the Inspector's result of whoami does not show "name": "${USER_NAME}"${await alerts(page)}`);
  }
  const shot = join(outDir, 'whoami.png');
  await page.screenshot({ path: shot, fullPage: true });
  ok(`whoami from the Inspector's UI: "name": "${USER_NAME}"; screenshot ${shot}`);
}

// clientLog checks the Inspector's own record of its HTTP exchanges with
// our server: every answer as expected (the one 401 before the token, 405
// for the optional GET /mcp stream), and the token and an authorized
// tools/call there. The page sends its log lines to the Inspector's backend
// as it goes; ones sent just before the page navigated away may be lost, so
// only what comes after the token is required.
async function clientLog() {
  let entries = [];
  const complete = () => {
    const t = entries.findIndex((e) => e.method === 'POST' && e.path === `${base}/oauth/token`);
    return t >= 0 && entries.slice(t).some((e) => e.method === 'POST' && e.path === mcpURL && e.authorized &&
      e.rpc === 'tools/call' && e.status === 200);
  };
  await waitFor(async () => {
    entries = await readClientLog();
    return complete();
  }, 10_000, async () => `the Inspector's client log (${inspectorLog}) has no POST /oauth/token followed by an authorized ` +
    `tools/call answered 200; it has: ${entries.map(show).join(', ') || 'nothing'}`);
  const token = entries.findIndex((e) => e.method === 'POST' && e.path === `${base}/oauth/token`);
  const wrong = entries.filter((e, i) => {
    if (e.status === 200 || (e.status === 201 && e.path === `${base}/oauth/register`) || (e.status === 202 && e.path === mcpURL)) return false;
    if (e.status === 401 && e.path === mcpURL && !e.authorized && i < token) return false;
    if (e.status === 405 && e.method === 'GET' && e.path === mcpURL) return false;
    return true;
  });
  check(wrong.length === 0, `our server answered the Inspector unexpectedly: ${wrong.map(show).join(', ')}`);
  const first = entries[0];
  if (first?.status === 401) {
    check(/resource_metadata="?([^",\s]+)/.exec(first.wwwAuthenticate ?? '')?.[1] === PRM,
      `the first 401's WWW-Authenticate is "${first.wwwAuthenticate}", want resource_metadata="${PRM}"`);
  }
  ok(`the Inspector's client log: ${entries.length} exchanges with ${base}, all answered as expected: ` +
    `${[...new Set(entries.map((e) => `${e.method} ${new URL(e.path).pathname}${e.rpc ? ` ${e.rpc}` : ''} ${e.status}`))].join(', ')}`);
}

function show(e) {
  return `${e.method} ${e.path}${e.rpc ? ` (${e.rpc})` : ''} → ${e.status ?? 'no response'}`;
}

async function readClientLog() {
  let text = '';
  try {
    text = await readFile(inspectorLog, 'utf8');
  } catch {
    return [];
  }
  const out = [];
  for (const line of text.split('\n')) {
    let e;
    try {
      e = JSON.parse(line);
    } catch {
      continue;
    }
    const rq = e?.fetchRequest;
    if (!rq?.url || new URL(rq.url).origin !== base) continue;
    let rpc;
    try {
      rpc = JSON.parse(rq.body)?.method;
    } catch {
      // Not JSON-RPC.
    }
    out.push({
      method: rq.method,
      path: urlPath(rq.url),
      rpc,
      authorized: Object.keys(rq.headers ?? {}).some((k) => k.toLowerCase() === 'authorization'),
      status: e.fetchResponse?.status,
      wwwAuthenticate: e.fetchResponse?.headers?.['www-authenticate'],
    });
  }
  return out;
}

// withBrowser runs fn in a fresh Chromium profile (nothing remembered), and
// saves a screenshot as inspector-failure.png when fn fails.
function withBrowser(fn) {
  return withChromium({
    failureShot: join(outDir, 'inspector-failure.png'), stepTimeout: STEP_TIMEOUT,
    // The Inspector's layout wants a wide window.
    viewport: { width: 1280, height: 900 },
  }, async (context) => fn(await instrument(context)));
}

// ours says whether a page URL is one of ours (the handler's or the
// stand-in's) rather than the Inspector's.
function ours(url) {
  try {
    const u = new URL(url);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.origin !== inspectorOrigin;
  } catch {
    return false;
  }
}

function originOf(url) {
  try {
    return new URL(url).origin;
  } catch {
    return null;
  }
}

// report files a browser message under problems (our pages) or notes (the
// Inspector's).
function report(pageURL, message) {
  (ours(pageURL) ? problems : notes).push(redact(message));
}

async function instrument(context) {
  await context.exposeBinding('__reportCSPViolation', ({ page }, v) => {
    report(page.url(), `CSP violation on ${urlPath(page.url())}: ${v.directive} blocked ${v.blocked ? urlPath(v.blocked) : '(inline)'}`);
  });
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__reportCSPViolation({ directive: e.violatedDirective, blocked: e.blockedURI });
    });
  });

  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (msg) => {
    if (msg.type() === 'error') report(page.url(), `console error on ${urlPath(page.url())}: ${withoutQueries(msg.text())}`);
  });
  page.on('pageerror', (err) => report(page.url(), `page error on ${urlPath(page.url())}: ${withoutQueries(err.message)}`));
  page.on('requestfailed', (req) => {
    const from = req.frame()?.url() ?? page.url();
    const message = `request failed: ${req.method()} ${urlPath(req.url())}: ${req.failure()?.errorText}`;
    // A request to our server fails on our account wherever it came from.
    if (originOf(req.url()) === base) problems.push(redact(message));
    else report(from, message);
  });
  page.on('request', (req) => {
    requests.push({ url: req.url(), from: req.frame()?.url() ?? page.url() });
    if (req.method() === 'POST' && urlPath(req.url()) === `${inspector}/api/fetch`) {
      try {
        // Parsed here: the Inspector's page sends JSON, but with the proxied
        // request's Content-Type when it has one (a form for /oauth/token),
        // and postDataJSON() goes by the Content-Type.
        const f = JSON.parse(req.postData());
        fetched.push({ method: (f.method ?? 'GET').toUpperCase(), url: f.url, body: f.body });
      } catch {
        // Not what this version of the Inspector sends; the checks say so.
      }
    }
  });
  page.on('response', async (resp) => {
    const p = urlPath(resp.url());
    if (p !== `${inspector}/api/mcp/connect` && p !== `${inspector}/api/mcp/send`) return;
    try {
      const body = await resp.json();
      if (body?.authChallenge) challenges.push(body.authChallenge);
    } catch {
      // The page navigated away before the body could be read.
    }
  });
  return page;
}



function expectNoProblems() {
  check(problems.length === 0, `our pages reported problems:\n    ${problems.join('\n    ')}`);
  const mine = requests.filter((r) => ours(r.from));
  const foreign = mine.filter((r) => !isLocal(new URL(r.url)));
  check(foreign.length === 0, `our pages loaded from outside loopback: ${foreign.map((r) => urlPath(r.url)).join(', ')}`);
  ok(`our pages: no console errors, page errors or CSP violations; ${mine.length} requests, all to loopback`);
}

function printNotes() {
  if (!notes.length) return;
  const shown = [...new Set(notes)];
  console.log(`  note: the Inspector's own pages reported ${notes.length} problem(s), not ours and not checked:`);
  for (const n of shown.slice(0, 8)) console.log(`        ${n}`);
  if (shown.length > 8) console.log(`        … and ${shown.length - 8} more`);
}


// alerts are the Inspector's notifications on screen, for messages.
async function alerts(page) {
  const said = await page.getByRole('alert').allTextContents().catch(() => []);
  const texts = said.map((s) => withoutQueries(s.replace(/\s+/g, ' ').trim())).filter(Boolean);
  return texts.length ? `; the Inspector says: ${texts.map((t) => `"${t}"`).join(', ')}` : '';
}

// waitFor polls cond until it holds or ms pass; then fails with what().
async function waitFor(cond, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond().catch(() => false)) return;
    if (Date.now() > end) throw new Failure(await what());
    await new Promise((r) => setTimeout(r, 200));
  }
}

// redact drops long hex strings from a message: the Inspector names the
// storage of an OAuth flow in progress by its state.
function redact(text) {
  return text.replace(/[0-9a-f]{32,}/gi, '…');
}


const t0 = Date.now();
try {
  await main();
  printNotes();
  console.log(`MCP Inspector OAuth: all ${done.length} checks ok (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
} catch (err) {
  printNotes();
  if (err instanceof Failure) {
    console.error(`MCP Inspector OAuth FAILED: ${err.message}`);
  } else {
    console.error(`MCP Inspector OAuth FAILED with an error: ${err?.stack ?? err}`);
  }
  process.exit(1);
}
