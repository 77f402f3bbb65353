// Shared by the Node CI scripts (browser-signin.mjs, oauth-sdk-client.mjs,
// browser-oauth.mjs, browser-cors.mjs, inspector-oauth.mjs,
// conformance-authorization.mjs): failure reporting, Chromium in a fresh
// profile (playwright-core, pinned in .ci/package.json), the words of the
// pages they walk through (UI), the demo users and their tools (from the
// golden tools-per-role file), the SDK's OAuthClientProvider kept in
// memory, tool-call helpers, URL helpers, and the one walk from our consent
// page through the Entra stand-in's account picker.
//
// Nothing here prints tokens, codes or CSRF values; urlPath is the way to
// print a URL.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

// Packages come from .ci/node_modules (npm ci of .ci/package-lock.json),
// through require: the SDK's CommonJS build is what the scripts use, so
// instanceof works across its modules.
export const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

// UI holds the words of the pages the scripts walk through, as the
// handler's consent page (handler/oauthserver) and code page
// (handler/signin) and the Entra stand-in's account picker
// (handler/devidp) say them.
export const UI = {
  consent: { title: 'Authorize access', heading: 'Authorize access', allow: 'Allow', deny: 'Deny' },
  picker: { title: 'Pick an account · devidp', heading: 'Pick an account' },
  code: { title: 'You are signed in', heading: 'You are signed in' },
};

// The golden tools-per-role file, which handler/tools's TestToolsPerRole
// keeps true to the catalog, the role map and the demo users.
const golden = JSON.parse(readFileSync(new URL('../handler/tools/toolstest/tools-per-role.json', import.meta.url), 'utf8'));

// demoUser returns the dev-mode demo user key ("reader", "all", ...): its
// key, name, roles, and as tools what its token lists in dev mode, in
// tools/list order (the golden devMode list: our tools and the demo
// upstream's its roles allow).
export function demoUser(key) {
  const u = golden.users.find((x) => x.key === key);
  if (!u) throw new Error(`the golden tools-per-role file has no demo user "${key}"`);
  return { ...u, tools: u.devMode };
}

// The running script's name ("oauth-sdk-client" for oauth-sdk-client.mjs),
// for messages and the Browser's User-Agent.
const script = basename(process.argv[1] ?? 'oauth', '.mjs');

// withChromium runs fn(context) in a fresh Chromium (playwright-core's
// chromium, the executable named by CHROMIUM) with an empty profile, so
// nothing (cookies, remembered consent) carries over, and removes the
// profile afterwards. When fn fails it saves a screenshot of the first page
// to failureShot.
export async function withChromium({ failureShot, viewport = { width: 1024, height: 720 }, stepTimeout = 15_000 }, fn) {
  const executablePath = need('CHROMIUM');
  const profile = await mkdtemp(join(tmpdir(), `${script}-`));
  let context;
  try {
    // launchPersistentContext is how Playwright takes a --user-data-dir.
    // The networking flags keep Chromium from calling home; CI machines
    // have no internet access.
    context = await chromium.launchPersistentContext(profile, {
      executablePath,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport,
      timeout: 30_000,
    });
    context.setDefaultTimeout(stepTimeout);
    context.setDefaultNavigationTimeout(stepTimeout);
    try {
      return await fn(context);
    } catch (err) {
      const page = context.pages()[0];
      if (page) await page.screenshot({ path: failureShot, fullPage: true }).catch(() => {});
      throw err;
    }
  } finally {
    if (context) await context.close().catch(() => {});
    await rm(profile, { recursive: true, force: true });
  }
}

// need returns the environment variable name, or exits 2 when it is unset.
export function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`${script}: ${name} is not set`);
    process.exit(2);
  }
  return v;
}

// Failure is a check that did not hold (as opposed to a crash).
export class Failure extends Error {}

export function check(ok, message) {
  if (!ok) throw new Failure(message);
}

// done lists the checks that held, in order; ok adds one and prints it.
export const done = [];
export function ok(message) {
  done.push(message);
  console.log(`  ok  ${message}`);
}

// MemoryProvider is the SDK's OAuthClientProvider, kept in memory. It stores
// what saveClientInformation and saveTokens get unchanged (the SDK stamps
// them with the authorization server's URL as `issuer`), and records the
// states it made, the authorization URLs it was sent to and the scopes of
// invalidateCredentials. With withState false it has no state() method
// (state() is optional in the SDK, which then sends no state), like a client
// that relies on PKCE alone.
export class MemoryProvider {
  constructor({ redirectUrl, clientMetadata, clientMetadataUrl, clientInformation, withState = true }) {
    this._redirectUrl = redirectUrl;
    this._clientMetadata = clientMetadata;
    if (clientMetadataUrl) this.clientMetadataUrl = clientMetadataUrl;
    this._client = clientInformation;
    this._tokens = undefined;
    this._verifier = undefined;
    this.states = [];
    this.authorizationUrls = [];
    this.invalidated = [];
    this.sendsState = withState;
    if (withState) {
      this.state = () => {
        const s = randomBytes(16).toString('base64url');
        this.states.push(s);
        return s;
      };
    }
  }

  get redirectUrl() { return this._redirectUrl; }
  get clientMetadata() { return this._clientMetadata; }

  clientInformation() { return this._client; }
  saveClientInformation(info) { this._client = info; }
  tokens() { return this._tokens; }
  saveTokens(tokens) { this._tokens = tokens; }
  saveCodeVerifier(verifier) { this._verifier = verifier; }

  codeVerifier() {
    if (!this._verifier) throw new Error('no PKCE code verifier saved');
    return this._verifier;
  }

  redirectToAuthorization(url) { this.authorizationUrls.push(new URL(url)); }

  invalidateCredentials(scope) {
    this.invalidated.push(scope);
    if (scope === 'all' || scope === 'client') this._client = undefined;
    if (scope === 'all' || scope === 'tokens') this._tokens = undefined;
    if (scope === 'all' || scope === 'verifier') this._verifier = undefined;
  }
}

// argumentsFor fills a tool's required arguments from its input schema; the
// title (or, lacking one, the first string argument) carries the marker.
export function argumentsFor(schema, title) {
  const props = schema?.properties ?? {};
  const required = schema?.required ?? [];
  const titleKey = 'title' in props ? 'title' : Object.keys(props).find((k) => props[k]?.type === 'string');
  check(titleKey, 'create_task has no string argument to carry a title');
  const args = {};
  for (const k of new Set([...required, titleKey])) {
    const p = props[k] ?? {};
    if (k === titleKey) args[k] = p.maxLength ? title.slice(0, p.maxLength) : title;
    else if (Array.isArray(p.enum)) args[k] = p.enum[0];
    else if (p.type === 'string') args[k] = 'x'.repeat(Math.max(1, p.minLength ?? 1));
    else if (p.type === 'integer' || p.type === 'number') args[k] = p.minimum ?? 1;
    else if (p.type === 'boolean') args[k] = false;
    else throw new Failure(`create_task needs argument ${k} of a type this test cannot fill (${JSON.stringify(p)})`);
  }
  check(args[titleKey] === title, `create_task's ${titleKey} is too short for the test's marker`);
  return args;
}

// structured is a tool result's structured content (or its text as JSON).
export function structured(result, what) {
  const text = (result.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');
  check(!result.isError, `${what} returned an error: ${text.slice(0, 300)}`);
  if (result.structuredContent) return result.structuredContent;
  try {
    return JSON.parse(text);
  } catch {
    throw new Failure(`${what} returned no structured content`);
  }
}

// isLoopback says whether the URL u (a URL object) is on a loopback host.
function isLoopback(u) {
  return ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname);
}

// urlPath drops the query: authorization URLs carry codes and state.
export function urlPath(u) {
  try {
    const p = new URL(u);
    return p.origin + p.pathname;
  } catch {
    return String(u).split('?')[0];
  }
}

// Checks on real pages (playwright-core).

export async function expectHeading(page, want) {
  const h1 = page.locator('h1');
  check(await h1.count() === 1, `${urlPath(page.url())} has ${await h1.count()} h1 headings, want 1`);
  const got = (await h1.textContent()).trim();
  check(got === want, `${urlPath(page.url())} heading is "${got}", want "${want}"`);
}

// expectCSP checks that a page's policy starts from nothing allowed.
export function expectCSP(resp, what) {
  const csp = resp.headers()['content-security-policy'] ?? '';
  check(csp.split(';').map((d) => d.trim()).includes("default-src 'none'"),
    `the ${what}'s Content-Security-Policy lacks default-src 'none': "${csp}"`);
}

// pageError is the error a page shows (class "error"), for messages.
export async function pageError(page) {
  const said = await page.locator('.error').first().textContent({ timeout: 1_000 }).catch(() => null);
  return said ? `: "${said.trim()}"` : '';
}

// isLocal says whether a URL a page loaded stayed on this machine:
// loopback, or no network at all (data:, about:, blob:).
export function isLocal(u) {
  return isLoopback(u) || ['data:', 'about:', 'blob:'].includes(u.protocol);
}

// withoutQueries drops the queries of the URLs in a browser message: they
// may carry codes and state.
export function withoutQueries(text) {
  return text.replace(/(https?:\/\/[^\s'"?#]+)[?#][^\s'"]*/g, '$1?…');
}

// clickAndLand clicks and returns the response of the page the click ends
// on, redirects followed, once that page has loaded. A navigation the
// browser blocked (a CSP form-action refusing a redirect, say) ends
// nowhere: then the problems the browser reported are the message.
export async function clickAndLand(page, locator, what, problems) {
  try {
    const [resp] = await Promise.all([
      page.waitForResponse((r) => r.request().isNavigationRequest() && r.request().frame() === page.mainFrame() &&
        (r.status() < 300 || r.status() >= 400)),
      locator.click(),
    ]);
    await arrived(page, resp);
    return resp;
  } catch (err) {
    if (problems.length) {
      throw new Failure(`clicking ${what} led to no page; the browser reported:\n    ${problems.join('\n    ')}`);
    }
    throw err;
  }
}

// arrived waits until the page is on the origin of resp and has loaded.
export async function arrived(page, resp) {
  const origin = new URL(resp.url()).origin;
  await page.waitForURL((u) => u.origin === origin, { waitUntil: 'load' });
}

// cookieNames lists the names of the cookies the browser keeps for url,
// without a __Host- prefix.
export async function cookieNames(context, url) {
  return (await context.cookies(url)).map((c) => c.name.replace(/^__Host-/, ''));
}

// expectConsentPage checks the consent page the browser is on, resp being
// the response that brought it there: title and heading, the client's name
// and redirect host as given, a form with a hidden CSRF token and request
// and the Allow and Deny buttons, a policy that allows nothing by default,
// and no framing. It returns what the page shows: client-name,
// client-host, redirect-host and scope.
export async function expectConsentPage(page, resp, { base, clientName, redirectHost }) {
  check(urlPath(page.url()) === `${base}/oauth/authorize`,
    `the authorization URL led to ${urlPath(page.url())} ("${await page.title()}"), want the consent page at ${base}/oauth/authorize`);
  check(resp.status() === 200, `the consent page answered ${resp.status()}, want 200${await pageError(page)}`);
  check(/^text\/html\b/.test(resp.headers()['content-type'] ?? ''), `the consent page is ${resp.headers()['content-type']}, want text/html`);
  check(await page.title() === UI.consent.title, `consent page title is "${await page.title()}", want "${UI.consent.title}"`);
  await expectHeading(page, UI.consent.heading);
  const shown = {};
  for (const id of ['client-name', 'client-host', 'redirect-host', 'scope']) {
    const el = page.locator(`#${id}`);
    check(await el.count() === 1 && await el.isVisible(), `the consent page shows no single visible #${id}`);
    shown[id] = (await el.textContent() ?? '').trim();
  }
  check(shown['client-name'] === clientName, `#client-name shows "${shown['client-name']}", want "${clientName}"`);
  check(shown['redirect-host'] === redirectHost, `#redirect-host shows "${shown['redirect-host']}", want "${redirectHost}"`);
  const allow = page.getByRole('button', { name: UI.consent.allow, exact: true });
  const deny = page.getByRole('button', { name: UI.consent.deny, exact: true });
  check(await allow.count() === 1 && await deny.count() === 1,
    `the consent page has no single "${UI.consent.allow}" and "${UI.consent.deny}" button`);
  const form = page.locator('form').filter({ has: allow }).filter({ has: deny });
  check(await form.count() === 1, `"${UI.consent.allow}" and "${UI.consent.deny}" are not in one form`);
  check((await form.getAttribute('method') ?? '').toLowerCase() === 'post', 'the consent form does not post');
  for (const name of ['request', 'csrf_token']) {
    const input = form.locator(`input[type="hidden"][name="${name}"]`);
    check(await input.count() === 1 && await input.inputValue(), `the consent form has no hidden, non-empty "${name}"`);
  }
  expectCSP(resp, 'consent page');
  // A consent page in a frame of another site could be clicked through.
  const h = resp.headers();
  const csp = (h['content-security-policy'] ?? '').split(';').map((d) => d.trim());
  check(csp.includes("frame-ancestors 'none'") || (h['x-frame-options'] ?? '').toUpperCase() === 'DENY',
    'the consent page may be framed: no CSP frame-ancestors \'none\' and no X-Frame-Options: DENY');
  ok(`consent page: "${UI.consent.title}", client "${shown['client-name']}" (${shown['client-host']}), ` +
    `redirect host ${shown['redirect-host']}, scope "${shown.scope}"; a posting form with request and csrf_token, ` +
    `"${UI.consent.allow}" and "${UI.consent.deny}"; CSP with default-src 'none', not frameable`);
  return shown;
}

// expectPicker checks that resp, the page the browser got to, is the Entra
// stand-in's account picker: on a loopback origin other than base and
// those in notOn. It returns the picker's URL.
export async function expectPicker(page, resp, { base, notOn = [] }) {
  const pickURL = new URL(resp.url());
  check(pickURL.origin !== base && !notOn.includes(pickURL.origin) && isLoopback(pickURL) &&
    pickURL.pathname.endsWith('/oauth2/v2.0/authorize'),
  `the browser is at ${urlPath(pickURL)}${await pageError(page)}, want the Entra stand-in's account picker on another loopback port`);
  check(resp.status() === 200, `the account picker answered ${resp.status()}, want 200`);
  check(await page.title() === UI.picker.title, `account picker title is "${await page.title()}", want "${UI.picker.title}"`);
  return pickURL;
}

// allowAndPick is the walk from the consent page the browser is on: it
// clicks "Allow", checks the account picker, runs atPicker(pickURL) if
// given, and hands over to pickAccount. problems is the list the browser's
// complaints go to.
export async function allowAndPick(page, { base, user, problems = [], notOn = [], atPicker }) {
  // "Allow" is armed a moment after the page is visible and focused; the
  // click waits for it to be enabled.
  const allow = page.getByRole('button', { name: UI.consent.allow, exact: true });
  check(await allow.count() === 1, `the consent page has no single "${UI.consent.allow}" button`);
  const pickResp = await clickAndLand(page, allow, `"${UI.consent.allow}"`, problems);
  const pickURL = await expectPicker(page, pickResp, { base, notOn });
  ok(`clicked "${UI.consent.allow}" → stand-in account picker at ${pickURL.origin}`);
  await atPicker?.(pickURL);
  return pickAccount(page, { base, user, problems, pickURL });
}

// pickAccount clicks the demo user's button on the account picker at
// pickURL, and returns the response of the page the browser lands on
// (redirects followed), after checking that the way there went through
// base's /auth/callback.
export async function pickAccount(page, { base, user, problems = [], pickURL }) {
  const button = page.getByRole('button', { name: user.name });
  check(await button.count() === 1, `the account picker has no single "${user.name}" button`);
  const landResp = await clickAndLand(page, button, `"${user.name}"`, problems);
  const landed = new URL(landResp.url());
  if (landed.origin === pickURL.origin) {
    throw new Failure(`the Entra stand-in refused the sign-in (${landResp.request().method()} ${landed.pathname} ` +
      `answered ${landResp.status()}: "${await page.title()}"${await pageError(page)}); ` +
      `Chromium sent the form with Origin: ${landResp.request().headers()['origin'] ?? '(none)'}`);
  }
  const way = [];
  for (let r = landResp.request(); r; r = r.redirectedFrom()) way.unshift(urlPath(r.url()));
  check(way.includes(`${base}/auth/callback`), `the way back from the account picker did not pass through ${base}/auth/callback: ${way.join(' → ')}`);
  return landResp;
}

// expectCode checks the authorization response at u, the client's
// redirect URI: no error, a code, the state the client sent (none when
// state is null) and iss=base. It returns the code.
export function expectCode(u, { redirectUri, base, state, who = 'the client' }) {
  check(urlPath(u) === redirectUri, `the browser landed on ${urlPath(u)}, want ${who}'s ${redirectUri}`);
  const q = u.searchParams;
  check(!q.has('error'), `${who} got error=${q.get('error')}: ${q.get('error_description') ?? ''}`);
  check(q.get('code'), `${who} got no code`);
  if (state === null) check(!q.has('state'), `${who} got a state back, though it sent none`);
  else check(q.get('state') === state, `${who} got back a state other than the one it sent`);
  check(q.get('iss') === base, `${who} got iss=${q.get('iss')}, want ${base}`);
  return q.get('code');
}
