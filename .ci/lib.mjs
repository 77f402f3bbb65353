// Shared by the Node CI scripts (browser-signin.mjs, oauth-sdk-client.mjs,
// browser-oauth.mjs, inspector-oauth.mjs, conformance-authorization.mjs):
// failure reporting, Chromium in a fresh profile, the SDK's
// OAuthClientProvider kept in memory, tool-call helpers, URL helpers, and a
// headless "browser" (node:http and a cookie jar) with the little HTML
// reading the handler's consent page and the Entra stand-in's account
// picker need.
//
// Nothing here prints tokens, codes or CSRF values; urlPath is the way to
// print a URL.

import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

// The running script's name ("oauth-sdk-client" for oauth-sdk-client.mjs),
// for messages and the Browser's User-Agent.
const script = basename(process.argv[1] ?? 'oauth', '.mjs');

// withChromium runs fn(context) in a fresh Chromium (playwright-core's
// chromium, Debian's executable) with an empty profile, so nothing (cookies,
// remembered consent) carries over, and removes the profile afterwards.
// When fn fails it saves a screenshot of the first page to failureShot.
export async function withChromium({ chromium, executablePath, failureShot, viewport = { width: 1024, height: 720 }, stepTimeout = 15_000 }, fn) {
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
export function isLoopback(u) {
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

// Browser stands in for the user's browser: top-level navigations with the
// headers a browser sends (Sec-Fetch-*, Origin on a form POST), redirects
// not followed (the test follows them step by step), and cookies kept per
// origin. node:http rather than fetch, which would force Sec-Fetch-Mode: cors.
// Options: userAgent (default "<script>.mjs"), timeout per request in ms
// (default 15 s).
export class Browser {
  constructor({ userAgent = `${script}.mjs`, timeout = 15_000 } = {}) {
    this.jar = new Map(); // origin → Map(name → value)
    this.userAgent = userAgent;
    this.timeout = timeout;
  }

  hasCookie(origin, name) {
    const c = this.jar.get(origin);
    return !!c && (c.has(name) || c.has(`__Host-${name}`));
  }

  // hasCookieStarting reports whether a cookie whose name starts with
  // prefix (after any __Host- prefix) is kept for origin.
  hasCookieStarting(origin, prefix) {
    const c = this.jar.get(origin);
    return !!c && [...c.keys()].some((k) => k.replace(/^__Host-/, '').startsWith(prefix));
  }

  // send navigates to url; from is the origin of the page the navigation
  // starts from (null for a URL the user's client opened).
  send(url, { method = 'GET', form = null, from = null } = {}) {
    const u = new URL(url);
    if (u.protocol !== 'http:') throw new Failure(`the flow went to ${urlPath(u)}; this test speaks plain http to loopback only`);
    const headers = {
      accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
      'user-agent': this.userAgent,
      'sec-fetch-dest': 'document',
      'sec-fetch-mode': 'navigate',
      'sec-fetch-site': fetchSite(from, u),
    };
    if (from === null) headers['sec-fetch-user'] = '?1';
    const cookies = this.jar.get(u.origin);
    if (cookies?.size) headers.cookie = [...cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    let body;
    if (method === 'POST') {
      body = new URLSearchParams(form).toString();
      headers['content-type'] = 'application/x-www-form-urlencoded';
      headers['content-length'] = Buffer.byteLength(body);
      headers.origin = from;
    }
    return new Promise((resolve, reject) => {
      const req = httpRequest(u, { method, headers, timeout: this.timeout }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          this.store(u.origin, res.headers['set-cookie'] ?? []);
          resolve({
            url: u,
            status: res.statusCode,
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
            location: res.headers.location ? new URL(res.headers.location, u) : null,
            jar: this,
          });
        });
      });
      req.on('timeout', () => req.destroy(new Failure(`${method} ${urlPath(u)} did not answer within ${this.timeout / 1000} s`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  // submit posts a form of page as a click on the button {name, value}
  // would: its named inputs plus the button's pair, to its action (the
  // page's own URL when it has none).
  submit(page, form, button) {
    const fields = new URLSearchParams();
    for (const i of form.inputs) {
      if (i.name && !['submit', 'button', 'image', 'reset'].includes((i.type ?? '').toLowerCase())) fields.append(i.name, i.value ?? '');
    }
    fields.append(button.name, button.value);
    const action = form.attrs.action ? new URL(form.attrs.action, page.url) : page.url;
    return this.send(action, { method: 'POST', form: fields, from: page.url.origin });
  }

  store(origin, lines) {
    const jar = this.jar.get(origin) ?? new Map();
    for (const line of lines) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq < 1) continue;
      const name = pair.slice(0, eq).trim();
      let expired = false;
      for (const a of attrs) {
        const [k, v = ''] = a.split('=');
        const key = k.trim().toLowerCase();
        if (key === 'max-age' && Number(v) <= 0) expired = true;
        if (key === 'expires' && Date.parse(v) <= Date.now()) expired = true;
      }
      if (expired) jar.delete(name);
      else jar.set(name, pair.slice(eq + 1).trim());
    }
    this.jar.set(origin, jar);
  }
}

function fetchSite(from, u) {
  if (from === null) return 'none';
  const f = new URL(from);
  if (f.origin === u.origin) return 'same-origin';
  return f.protocol === u.protocol && f.hostname === u.hostname ? 'same-site' : 'cross-site';
}

// Minimal HTML reading for the pages these tests know.

export function unescapeHTML(s) {
  const named = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0' };
  return s.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (m, e) => {
    if (e[0] === '#') {
      const n = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return Number.isFinite(n) ? String.fromCodePoint(n) : m;
    }
    return named[e.toLowerCase()] ?? m;
  });
}

export function textOf(html) {
  return unescapeHTML(html.replace(/<[^>]*>/g, ' ')).replace(/\s+/g, ' ').trim();
}

export function parseAttrs(s) {
  const out = {};
  for (const m of s.matchAll(/([^\s"'<>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g)) {
    out[m[1].toLowerCase()] = unescapeHTML(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return out;
}

export function pageTitle(html) {
  const m = /<title[^>]*>([\s\S]*?)<\/title>/i.exec(html ?? '');
  return m ? textOf(m[1]) : null;
}

export function headings(html) {
  return [...html.matchAll(/<h1\b[^>]*>([\s\S]*?)<\/h1>/gi)].map((m) => textOf(m[1]));
}

// byId returns the text of the element with that id, or null.
export function byId(html, id) {
  for (const m of html.matchAll(/<([a-z][a-z0-9]*)\b([^>]*)>/gi)) {
    if (parseAttrs(m[2]).id !== id) continue;
    const from = m.index + m[0].length;
    const end = html.toLowerCase().indexOf(`</${m[1].toLowerCase()}`, from);
    return end < 0 ? null : textOf(html.slice(from, end));
  }
  return null;
}

// forms returns each <form>'s attributes, <input> attributes and <button>s
// (attributes and text).
export function forms(html) {
  return [...html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)].map((m) => ({
    attrs: parseAttrs(m[1]),
    inputs: [...m[2].matchAll(/<input\b([^>]*)>/gi)].map((i) => parseAttrs(i[1])),
    buttons: [...m[2].matchAll(/<button\b([^>]*)>([\s\S]*?)<\/button>/gi)].map((b) => ({ attrs: parseAttrs(b[1]), text: textOf(b[2]) })),
  }));
}

// pageSays is the error an HTML or JSON answer of Browser.send carries, for
// messages.
export function pageSays(resp) {
  const body = resp.body ?? '';
  const m = /<p class="error">([\s\S]*?)<\/p>/i.exec(body);
  if (m) return `: "${textOf(m[1])}"`;
  const t = pageTitle(body);
  if (t) return `: page "${t}"`;
  try {
    const j = JSON.parse(body);
    if (j.error) return `: ${j.error}${j.error_description ? ` (${j.error_description})` : ''}`;
  } catch {
    // Not JSON.
  }
  return resp.location ? ` (to ${urlPath(resp.location)})` : '';
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
