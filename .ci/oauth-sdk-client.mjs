// OAuth test of the authorization-server front with the official MCP
// TypeScript SDK (@modelcontextprotocol/sdk), against a dev-mode handler at
// BASE_URL. A real Chromium (lib.mjs's withChromium) plays the user's
// browser through our consent page and the Entra stand-in's account picker.
//
// It checks the metadata (the 401's WWW-Authenticate, RFC 9728 and RFC 8414
// documents), then runs the whole flow three times: with a client that the
// SDK registers dynamically (RFC 7591), with a Client ID Metadata Document
// that this script serves on a loopback port, and with a registered client
// whose provider has no state() (the SDK then sends no state; OAuth 2.1
// lets PKCE alone protect the redirect):
//   1. the SDK connects with no token, gets the 401, discovers the
//      metadata from it, gets a client_id and hands over an authorization URL;
//   2. the browser loads the consent page, allows, picks demo user "all" on the
//      Entra stand-in's page and follows /auth/callback back to the client's
//      redirect URI, with code, iss and the state the SDK sent (none if it
//      sent none);
//   3. the SDK trades the code (PKCE) and lists and calls tools with the token;
//   4. the SDK refreshes; the refresh token rotates, and presenting the old
//      one again revokes the whole chain, the new one included;
//   5. the SDK starts over (its refresh fails), the consent is remembered so
//      the consent page is skipped, the new tokens work, and RFC 7009
//      revocation ends them.
//
// Environment: BASE_URL, OUT_DIR (failure screenshots), CHROMIUM
// (executable). Tokens, codes and CSRF values are never printed; URLs are
// printed without their query.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';

import {
  Failure, MemoryProvider, allowAndPick, argumentsFor, check, cookieNames, demoUser, done, expectCode, expectConsentPage,
  expectPicker, need, ok, pickAccount, require, structured, urlPath, withChromium,
} from './lib.mjs';

const base = need('BASE_URL').replace(/\/$/, '');
const mcpURL = `${base}/mcp`;
const outDir = need('OUT_DIR');
// The package's exports map sends "./*" to dist/cjs/* for require: all three
// come from the same (CommonJS) build, so instanceof works across them.
const { auth, UnauthorizedError } = require('@modelcontextprotocol/sdk/client/auth.js');
const { Client } = require('@modelcontextprotocol/sdk/client/index.js');
const { StreamableHTTPClientTransport } = require('@modelcontextprotocol/sdk/client/streamableHttp.js');
const { InvalidClientMetadataError } = require('@modelcontextprotocol/sdk/server/auth/errors.js');
// Not require('.../package.json'): the exports map would send that to dist/cjs.
const sdkVersion = JSON.parse(readFileSync(
  new URL('./node_modules/@modelcontextprotocol/sdk/package.json', import.meta.url), 'utf8')).version;

// The demo user the browser signs in as, and the tools its token lists
// (the golden tools-per-role file).
const user = demoUser('all');
const USER_NAME = user.name;

// Every request the SDK makes goes through recordingFetch (the transport's
// fetch option, which auth() gets too): method, URL without query, status,
// and the harmless form parameters, so the test can check what the SDK did
// and print the trail when it fails.
const trail = [];
const SAFE_PARAMS = ['grant_type', 'client_id', 'redirect_uri', 'resource', 'scope', 'token_type_hint'];

async function recordingFetch(input, init) {
  const url = input instanceof Request ? input.url : String(input);
  const entry = {
    method: (init?.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase(),
    url: urlPath(url),
    params: formParams(init?.body),
    status: 0,
    wwwAuthenticate: null,
  };
  trail.push(entry);
  const res = await fetch(input, init);
  entry.status = res.status;
  entry.wwwAuthenticate = res.headers.get('www-authenticate');
  return res;
}

// formParams keeps the values of SAFE_PARAMS and only the names of the rest
// (codes, verifiers, refresh tokens).
function formParams(body) {
  if (!(body instanceof URLSearchParams)) return null;
  const out = {};
  for (const [k, v] of body) out[k] = SAFE_PARAMS.includes(k) ? v : '(set)';
  return out;
}

let prm;
let asMeta;

async function main() {
  console.log(`  using @modelcontextprotocol/sdk ${sdkVersion}`);
  await checkMetadata();
  const docs = await startDocServer();
  try {
    await runFlow('DCR', docs);
    await runFlow('CIMD', docs);
    await runFlow('DCR', docs, { withState: false });
  } finally {
    await docs.close();
  }
}

// checkMetadata checks what the SDK will read: the 401, the protected
// resource metadata and the authorization server metadata.
async function checkMetadata() {
  const prmURL = `${base}/.well-known/oauth-protected-resource/mcp`;
  const res = await fetch(mcpURL, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
  });
  await res.body?.cancel();
  check(res.status === 401, `POST /mcp without a token answered ${res.status}, want 401`);
  const challenge = res.headers.get('www-authenticate') ?? '';
  check(/^Bearer\b/i.test(challenge) && challenge.includes(`resource_metadata="${prmURL}"`),
    `the 401's WWW-Authenticate is "${challenge}", want Bearer with resource_metadata="${prmURL}"`);
  ok(`POST /mcp without a token: 401, WWW-Authenticate names ${urlPath(prmURL)}`);

  for (const u of [prmURL, `${base}/.well-known/oauth-protected-resource`]) {
    const doc = await getJSON(u);
    check(doc.resource === mcpURL, `${urlPath(u)}: resource is ${JSON.stringify(doc.resource)}, want "${mcpURL}"`);
    check(sameList(doc.authorization_servers, [base]),
      `${urlPath(u)}: authorization_servers is ${JSON.stringify(doc.authorization_servers)}, want ["${base}"]`);
    check(Array.isArray(doc.scopes_supported) && doc.scopes_supported.length === 1 &&
      /^api:\/\/[0-9a-f-]{36}\/access_as_user$/.test(doc.scopes_supported[0]),
    `${urlPath(u)}: scopes_supported is ${JSON.stringify(doc.scopes_supported)}, want ["api://<client id>/access_as_user"]`);
    prm = doc;
  }
  ok(`protected resource metadata: resource ${prm.resource}, authorization server ${base}, scope ${prm.scopes_supported[0]}`);
  // MCP authorization, scope selection: the challenge's scope comes first
  // for a client, so it must be the one the metadata advertises.
  check(challenge.includes(`scope="${prm.scopes_supported.join(' ')}"`),
    `the 401's WWW-Authenticate is "${challenge}", want scope="${prm.scopes_supported.join(' ')}" (scopes_supported)`);
  ok('the 401\'s challenge names the scope scopes_supported advertises');

  const asURL = `${base}/.well-known/oauth-authorization-server`;
  const doc = await getJSON(asURL);
  const where = urlPath(asURL);
  check(doc.issuer === base, `${where}: issuer is ${JSON.stringify(doc.issuer)}, want "${base}"`);
  for (const [k, path] of [['authorization_endpoint', '/oauth/authorize'], ['token_endpoint', '/oauth/token'],
    ['registration_endpoint', '/oauth/register'], ['revocation_endpoint', '/oauth/revoke']]) {
    check(doc[k] === base + path, `${where}: ${k} is ${JSON.stringify(doc[k])}, want "${base}${path}"`);
  }
  // The SDK's OAuthMetadataSchema requires response_types_supported, and
  // startAuthorization refuses a server without "code" in it.
  check(Array.isArray(doc.response_types_supported) && doc.response_types_supported.includes('code'),
    `${where}: response_types_supported is ${JSON.stringify(doc.response_types_supported)}; ` +
    'the SDK requires it, with "code"');
  check(sameList(doc.code_challenge_methods_supported, ['S256']),
    `${where}: code_challenge_methods_supported is ${JSON.stringify(doc.code_challenge_methods_supported)}, want ["S256"]`);
  check(sameList(doc.token_endpoint_auth_methods_supported, ['none']),
    `${where}: token_endpoint_auth_methods_supported is ${JSON.stringify(doc.token_endpoint_auth_methods_supported)}, want ["none"]`);
  check(doc.client_id_metadata_document_supported === true, `${where}: client_id_metadata_document_supported is not true`);
  check(doc.authorization_response_iss_parameter_supported === true,
    `${where}: authorization_response_iss_parameter_supported is not true`);
  check(sameList(doc.scopes_supported, prm.scopes_supported),
    `${where}: scopes_supported is ${JSON.stringify(doc.scopes_supported)}, want the protected resource's`);
  asMeta = doc;
  ok('authorization server metadata (RFC 8414): issuer, endpoints, S256, public clients, ' +
    'client ID metadata documents, iss parameter');
  // No OpenID Provider Configuration: the server issues no ID tokens, and
  // the SDK finds the RFC 8414 document first (expectDiscovery checks it).
  const oidc = await fetch(`${base}/.well-known/openid-configuration`);
  await oidc.body?.cancel();
  check(oidc.status === 404, `GET /.well-known/openid-configuration answered ${oidc.status}, want 404`);
  ok('/.well-known/openid-configuration: 404 (no OpenID Connect claimed)');
}

// runFlow runs steps 1 to 5 for one kind of client: "DCR" (registered by
// the SDK) or "CIMD" (a Client ID Metadata Document served by docs); with
// withState false its provider has no state(). Each run has a browser
// profile of its own.
async function runFlow(kind, docs, { withState = true } = {}) {
  const label = withState ? kind : `${kind} without state()`;
  console.log(`  -- ${label} client`);
  const shot = join(outDir, `sdk-${label.replace(/[^A-Za-z]+/g, '-')}-failure.png`);
  await withChromium({ failureShot: shot }, async (context) =>
    flow(context, context.pages()[0] ?? await context.newPage(), { kind, label, docs, withState }));
}

async function flow(context, page, { kind, label, docs, withState }) {
  const clientName = `oauth-sdk-client ${label} ${randomBytes(3).toString('hex')}`;
  const redirectUrl = `${docs.origin}/callback`;
  const clientMetadata = {
    client_name: clientName,
    redirect_uris: [redirectUrl],
    // Without refresh_token the server registers authorization_code only.
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
  };

  // 1. Connect with nothing: the SDK must start from the 401.
  let provider;
  let start = trail.length;
  let first;
  if (kind === 'DCR') {
    provider = new MemoryProvider({ redirectUrl, clientMetadata, withState });
    first = await connectWithoutToken(provider);
  } else {
    const docPath = `/clients/${randomBytes(6).toString('hex')}.json`;
    const clientId = docs.origin + docPath;
    docs.serve(docPath, { client_id: clientId, ...clientMetadata });
    // The SDK's own way: clientMetadataUrl, used when the server's metadata
    // says client_id_metadata_document_supported. SDK 1.32.2 accepts only
    // https there, which a loopback test server cannot offer the handler.
    // A client ID metadata document's URL is just the client_id to the
    // SDK's later steps, so the fallback hands the SDK the same client_id as
    // client information, as it does itself (auth.js: clientInformation =
    // { client_id: clientMetadataUrl }).
    provider = new MemoryProvider({ redirectUrl, clientMetadata, clientMetadataUrl: clientId, withState });
    first = await connectWithoutToken(provider);
    if (first.error instanceof InvalidClientMetadataError && /https/i.test(first.error.message)) {
      ok(`SDK ${sdkVersion} refuses a plain-http clientMetadataUrl ("${first.error.message.split(',')[0]}"); ` +
        'giving it the document URL as the client_id instead');
      provider = new MemoryProvider({ redirectUrl, clientMetadata, clientInformation: { client_id: clientId }, withState });
      start = trail.length;
      first = await connectWithoutToken(provider);
    } else {
      ok(`SDK ${sdkVersion} takes the plain-http loopback clientMetadataUrl`);
    }
    provider.docPath = docPath;
  }
  check(first.error instanceof UnauthorizedError,
    `connecting with no token ended in ${describe(first.error)}, want the SDK's UnauthorizedError (redirect to authorization)`);
  const transport = first.transport;
  expectDiscovery(trail.slice(start), kind);

  const info = provider.clientInformation();
  check(info?.client_id, 'the SDK saved no client information');
  if (kind === 'DCR') {
    check(!info.client_secret, 'the registration answered a client_secret; clients here are public');
    check(info.token_endpoint_auth_method === 'none',
      `the registration answered token_endpoint_auth_method ${JSON.stringify(info.token_endpoint_auth_method)}, want "none"`);
    ok(`the SDK registered "${clientName}" (public client, ${info.client_id.length}-character client_id)`);
  } else {
    check(info.client_id === docs.origin + provider.docPath, 'the SDK does not use the document URL as client_id');
  }

  const authURL = expectAuthorizationURL(provider, redirectUrl);

  // 2. The browser: consent page, Allow, account picker, back to the client.
  const consent = await page.goto(authURL.href);
  check(consent, 'GET /oauth/authorize gave no response');
  await expectConsentPage(page, consent, { base, clientName, redirectHost: new URL(redirectUrl).host });
  check((await cookieNames(context, base)).includes('mcp-authorize'), 'GET /oauth/authorize set no mcp-authorize cookie');
  if (kind === 'CIMD') {
    check(docs.hits(provider.docPath) > 0, 'the handler showed the consent page without fetching the client metadata document');
    ok(`the handler fetched the client metadata document (${docs.hits(provider.docPath)} time(s))`);
  }
  const landed = await allowAndPick(page, {
    base, user,
    atPicker: async () => {
      check((await cookieNames(context, base)).some((n) => n.startsWith('mcp-signin-')),
        'POST /oauth/authorize (Allow) set no mcp-signin-* cookie (the sealed sign-in)');
      ok('Allow: the sign-in sealed in an mcp-signin-* cookie');
    },
  });
  const code = expectCode(new URL(landed.url()), { redirectUri: redirectUrl, base, state: provider.sendsState ? provider.states.at(-1) : null });
  ok(`picked "${USER_NAME}" → /auth/callback → the client's redirect URI with code, ` +
    `${provider.sendsState ? 'its state' : 'no state (it sent none)'} and iss=${base}`);
  check((await cookieNames(context, base)).includes('mcp-consent'), 'the completed sign-in set no mcp-consent cookie');

  // 3. Trade the code, then use the tools.
  start = trail.length;
  await transport.finishAuth(code);
  const tokenReq = trail.slice(start).find((e) => e.method === 'POST' && e.url === asMeta.token_endpoint);
  check(tokenReq, `finishAuth made no POST to ${asMeta.token_endpoint}`);
  check(tokenReq.status === 200, `the code exchange answered ${tokenReq.status}`);
  const p = tokenReq.params ?? {};
  check(p.grant_type === 'authorization_code' && p.code === '(set)' && p.code_verifier === '(set)' &&
    p.redirect_uri === redirectUrl && p.client_id === info.client_id && p.resource === mcpURL && !p.client_secret,
  `the SDK's code exchange sent ${JSON.stringify(p)}, want authorization_code with code, code_verifier, ` +
    'redirect_uri, client_id and resource and no secret');
  const tokens1 = expectTokens(provider.tokens(), 'the code exchange');
  ok(`finishAuth: code + PKCE verifier + resource → ${tokens1.token_type} token for ${tokens1.expires_in} s and a refresh token`);

  const taskTitle = `oauth-sdk-client ${label} ${new Date().toISOString()}`;
  await useTools(provider, `${label} token`, { taskTitle });

  // 4. Refresh through the SDK: auth() with stored tokens that carry a
  //    refresh token always refreshes (it does not look at expiry).
  start = trail.length;
  const refreshed = await auth(provider, { serverUrl: mcpURL, fetchFn: recordingFetch });
  check(refreshed === 'AUTHORIZED', `auth() with a refresh token answered ${refreshed}, want AUTHORIZED`);
  const refreshReq = trail.slice(start).find((e) => e.method === 'POST' && e.url === asMeta.token_endpoint);
  check(refreshReq?.params?.grant_type === 'refresh_token' && refreshReq.params.resource === mcpURL &&
    refreshReq.params.client_id === info.client_id && refreshReq.status === 200,
  `auth() did not refresh as expected: ${JSON.stringify(refreshReq ?? null)}`);
  const tokens2 = expectTokens(provider.tokens(), 'the refresh');
  check(tokens2.refresh_token !== tokens1.refresh_token, 'the refresh answered the same refresh token (no rotation)');
  // The access token may be the same: in proxy mode it is Entra's, and a
  // refresh gets it from the token cache while it is still valid.
  ok(`the SDK refreshed: new refresh token (rotated), ${tokens2.access_token === tokens1.access_token
    ? 'the same, still valid access token' : 'new access token'}`);

  start = trail.length;
  await useTools(provider, `${label} refreshed token`, { listOnly: true });
  const extra = trail.slice(start).filter((e) => e.status === 401 || e.url === asMeta.token_endpoint);
  check(extra.length === 0, `tools/list with the refreshed token needed ${extra.map(show).join(', ')}`);

  // The newest refresh token is used once more; then the first one comes
  // back. Within 30 s of its rotation and before its successor was used it
  // would be a retry after a lost reply (and get a successor); now it is
  // reuse, and revokes the chain.
  const third = await tokenRequest({ grant_type: 'refresh_token', refresh_token: tokens2.refresh_token,
    client_id: info.client_id, resource: mcpURL });
  check(third.status === 200 && third.json?.refresh_token, `refreshing with the new refresh token answered ${third.status}`);
  const reuse = await tokenRequest({ grant_type: 'refresh_token', refresh_token: tokens1.refresh_token,
    client_id: info.client_id, resource: mcpURL });
  expectInvalidGrant(reuse, 'the old (already used) refresh token');
  const after = await tokenRequest({ grant_type: 'refresh_token', refresh_token: third.json.refresh_token,
    client_id: info.client_id, resource: mcpURL });
  expectInvalidGrant(after, 'the newest refresh token after the old one was replayed');
  ok('replaying the old refresh token once its successor was used: 400 invalid_grant, and the newest one is revoked with it (400 invalid_grant)');

  // 5. Start over in the same browser. The SDK's refresh fails with
  //    invalid_grant, it drops its tokens and sends the user to authorize
  //    again; the consent is remembered, so no consent page.
  start = trail.length;
  const again = await auth(provider, { serverUrl: mcpURL, fetchFn: recordingFetch });
  check(again === 'REDIRECT', `auth() after the chain was revoked answered ${again}, want REDIRECT`);
  check(provider.invalidated.includes('tokens'), 'the SDK did not drop its revoked tokens (invalidateCredentials("tokens"))');
  check(!trail.slice(start).some((e) => e.url === asMeta.registration_endpoint), 'the SDK registered again');
  ok('auth() with the revoked chain: refresh refused, tokens dropped, new authorization URL (same client)');
  const authURL2 = expectAuthorizationURL(provider, redirectUrl);
  const skip = await page.goto(authURL2.href);
  check(skip, 'GET /oauth/authorize gave no response');
  let asked = skip.request();
  while (asked.redirectedFrom()) asked = asked.redirectedFrom();
  check(urlPath(asked.url()) === asMeta.authorization_endpoint && asked !== skip.request(),
    `GET /oauth/authorize with the consent remembered was not redirected (the browser is at ${urlPath(skip.url())}, ` +
    `"${await page.title()}"), want a redirect straight to the account picker`);
  const pickURL = await expectPicker(page, skip, { base });
  ok('second authorization: consent remembered, redirected straight to the account picker');
  const landed2 = await pickAccount(page, { base, user, pickURL });
  const code2 = expectCode(new URL(landed2.url()), { redirectUri: redirectUrl, base, state: provider.sendsState ? provider.states.at(-1) : null });
  ok(`picked "${USER_NAME}" again → the client's redirect URI with a new code`);
  const traded = await auth(provider, { serverUrl: mcpURL, authorizationCode: code2, fetchFn: recordingFetch });
  check(traded === 'AUTHORIZED', `auth() with the second code answered ${traded}`);
  const tokens3 = expectTokens(provider.tokens(), 'the second code exchange');
  await useTools(provider, `${label} second sign-in`, { whoamiOnly: true });

  // RFC 7009: revoking the refresh token ends its chain.
  const rev = await fetch(asMeta.revocation_endpoint, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
    body: new URLSearchParams({ token: tokens3.refresh_token, token_type_hint: 'refresh_token', client_id: info.client_id }),
  });
  await rev.body?.cancel();
  check(rev.status === 200, `POST /oauth/revoke answered ${rev.status}, want 200`);
  const revoked = await tokenRequest({ grant_type: 'refresh_token', refresh_token: tokens3.refresh_token,
    client_id: info.client_id, resource: mcpURL });
  expectInvalidGrant(revoked, 'a refresh token revoked at /oauth/revoke');
  ok('POST /oauth/revoke: 200, and the revoked refresh token is refused (400 invalid_grant)');
}

// connectWithoutToken connects with a provider that has no tokens. It
// returns the transport (for finishAuth) and the error connect ended in.
async function connectWithoutToken(provider) {
  const transport = new StreamableHTTPClientTransport(new URL(mcpURL), { authProvider: provider, fetch: recordingFetch });
  const client = new Client({ name: 'oauth-sdk-client', version: '1.0.0' });
  try {
    await client.connect(transport);
  } catch (error) {
    return { transport, error };
  }
  await client.close();
  throw new Failure('connecting with no token succeeded; want a 401 and the OAuth flow');
}

// expectDiscovery checks the SDK's requests from the first POST on: the
// 401, the metadata named by its WWW-Authenticate, the authorization server
// metadata, and (DCR only) the registration.
function expectDiscovery(steps, kind) {
  const prmURL = `${base}/.well-known/oauth-protected-resource/mcp`;
  const where = `the SDK's requests (${steps.map(show).join(', ')})`;
  check(steps[0]?.method === 'POST' && steps[0].url === mcpURL && steps[0].status === 401,
    `${where} do not start with POST /mcp → 401`);
  check((steps[0].wwwAuthenticate ?? '').includes(`resource_metadata="${prmURL}"`),
    'the 401 the SDK got names no resource_metadata');
  const iPRM = steps.findIndex((e) => e.method === 'GET' && e.url === prmURL && e.status === 200);
  check(iPRM > 0, `${where} do not fetch ${urlPath(prmURL)} after the 401`);
  const iAS = steps.findIndex((e, i) => i > iPRM && e.method === 'GET' &&
    e.url === `${base}/.well-known/oauth-authorization-server` && e.status === 200);
  check(iAS > 0, `${where} do not fetch the authorization server metadata after the protected resource metadata`);
  const reg = steps.filter((e) => e.url === asMeta.registration_endpoint);
  if (kind === 'DCR') {
    check(reg.length === 1 && reg[0].method === 'POST' && reg[0].status === 201 && steps.indexOf(reg[0]) > iAS,
      `${where} do not register once (POST /oauth/register → 201) after discovery`);
    ok('the SDK went 401 → protected resource metadata → authorization server metadata → POST /oauth/register (201)');
  } else {
    check(reg.length === 0, `${where} register a client although the client_id is a metadata document URL`);
    ok('the SDK went 401 → protected resource metadata → authorization server metadata, no registration');
  }
}

function expectAuthorizationURL(provider, redirectUrl) {
  const u = provider.authorizationUrls.at(-1);
  check(u, 'the SDK sent the user nowhere (redirectToAuthorization was not called)');
  provider.authorizationUrls.length = 0;
  check(urlPath(u) === asMeta.authorization_endpoint,
    `the SDK's authorization URL is ${urlPath(u)}, want ${asMeta.authorization_endpoint}`);
  const q = u.searchParams;
  const want = {
    response_type: 'code',
    client_id: provider.clientInformation().client_id,
    redirect_uri: redirectUrl,
    code_challenge_method: 'S256',
    scope: prm.scopes_supported.join(' '),
    resource: mcpURL,
  };
  if (provider.sendsState) want.state = provider.states.at(-1);
  for (const [k, v] of Object.entries(want)) {
    check(v && q.get(k) === v, `the SDK's authorization URL has ${k}=${k === 'state' ? '(other)' : q.get(k)}, want ${k === 'state' ? 'its state' : v}`);
  }
  if (!provider.sendsState) check(!q.has('state'), 'the SDK\'s authorization URL has a state, though its provider has no state()');
  check(/^[A-Za-z0-9_-]{43}$/.test(q.get('code_challenge') ?? ''), 'the SDK\'s authorization URL has no S256 code_challenge');
  ok(`authorization URL: /oauth/authorize with code, client_id, redirect_uri, S256 challenge, ${provider.sendsState ? 'state' : 'no state'}, scope, resource`);
  return u;
}

function expectTokens(t, what) {
  check(t, `${what} saved no tokens`);
  check(typeof t.access_token === 'string' && t.access_token, `${what} answered no access_token`);
  check(typeof t.refresh_token === 'string' && t.refresh_token, `${what} answered no refresh_token`);
  check((t.token_type ?? '').toLowerCase() === 'bearer', `${what} answered token_type "${t.token_type}", want Bearer`);
  check(t.expires_in > 0, `${what} answered expires_in ${t.expires_in}`);
  // auth() stamps saved tokens with the authorization server it used.
  check(t.issuer === base, `the SDK stamped the tokens with issuer ${t.issuer}, want ${base}`);
  return t;
}

// useTools connects with the provider's tokens and uses the tools.
async function useTools(provider, label, { taskTitle, listOnly = false, whoamiOnly = false } = {}) {
  const transport = new StreamableHTTPClientTransport(new URL(mcpURL), { authProvider: provider, fetch: recordingFetch });
  const client = new Client({ name: 'oauth-sdk-client', version: '1.0.0' });
  await client.connect(transport);
  try {
    if (!whoamiOnly) {
      const { tools } = await client.listTools();
      const names = tools.map((t) => t.name);
      check(sameList(names, user.tools), `tools/list with the ${label}: [${names.join(', ')}], want [${user.tools.join(', ')}]`);
      ok(`tools/list with the ${label}: all ${names.length} tools`);
      if (listOnly) return;
      const me = structured(await client.callTool({ name: 'whoami', arguments: {} }), 'whoami');
      check(me.name === USER_NAME, `whoami says name "${me.name}", want "${USER_NAME}"`);
      const create = tools.find((t) => t.name === 'create_task');
      const args = argumentsFor(create.inputSchema, taskTitle);
      const task = structured(await client.callTool({ name: 'create_task', arguments: args }), 'create_task');
      check(task.id && task.title === taskTitle, `create_task answered ${JSON.stringify(task).slice(0, 300)}`);
      const list = structured(await client.callTool({ name: 'list_tasks', arguments: {} }), 'list_tasks');
      check(Array.isArray(list.tasks) && list.tasks.some((t) => t.id === task.id && t.title === taskTitle),
        `list_tasks does not show the task create_task made (${task.id})`);
      ok(`tools/call as ${USER_NAME}: whoami, create_task (${Object.keys(args).join(', ')}), list_tasks shows it`);
    } else {
      const me = structured(await client.callTool({ name: 'whoami', arguments: {} }), 'whoami');
      check(me.name === USER_NAME, `whoami says name "${me.name}", want "${USER_NAME}"`);
      ok(`tools/call whoami with the ${label}: ${USER_NAME}`);
    }
  } finally {
    await client.close();
  }
}

async function tokenRequest(params) {
  const res = await fetch(asMeta.token_endpoint, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
    body: new URLSearchParams(params),
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // Checked by the caller.
  }
  return { status: res.status, json };
}

function expectInvalidGrant(r, what) {
  check(r.status === 400 && r.json?.error === 'invalid_grant',
    `POST /oauth/token with ${what} answered ${r.status} ${r.json?.error ?? '(not an OAuth error)'}, want 400 invalid_grant`);
  check(!r.json?.access_token, `POST /oauth/token with ${what} answered an access token`);
}

async function getJSON(u) {
  const res = await fetch(u, { headers: { Accept: 'application/json' } });
  const text = await res.text();
  check(res.status === 200, `GET ${urlPath(u)} answered ${res.status}`);
  try {
    return JSON.parse(text);
  } catch {
    throw new Failure(`GET ${urlPath(u)} did not answer JSON`);
  }
}

// startDocServer serves Client ID Metadata Documents on a loopback port, and
// counts the requests per path. Its /callback is the clients' redirect URI,
// where the browser lands with the code: it answers a small page.
async function startDocServer() {
  const docs = new Map();
  const hits = new Map();
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://127.0.0.1').pathname;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    const doc = docs.get(path);
    if (req.method === 'GET' && path === '/callback') {
      res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end('back at the client\n');
      return;
    }
    if (req.method === 'GET' && doc) {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
      res.end(JSON.stringify(doc));
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found\n');
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    origin: `http://127.0.0.1:${server.address().port}`,
    serve: (path, doc) => docs.set(path, doc),
    hits: (path) => hits.get(path) ?? 0,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(resolve);
    }),
  };
}

function sameList(a, b) {
  return Array.isArray(a) && a.length === b.length && a.every((x, i) => x === b[i]);
}

function show(e) {
  return `${e.method} ${e.url.startsWith(base) ? e.url.slice(base.length) || '/' : e.url} → ${e.status}`;
}

function describe(err) {
  if (!err) return 'no error';
  return `${err.constructor?.name ?? 'Error'}: ${err.message}`;
}

const t0 = Date.now();
try {
  await main();
  console.log(`oauth SDK client: all ${done.length} checks ok (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
} catch (err) {
  if (err instanceof Failure) {
    console.error(`oauth SDK client FAILED: ${err.message}`);
  } else {
    console.error(`oauth SDK client FAILED with an error: ${err?.stack ?? err}`);
  }
  if (trail.length) {
    console.error(`the SDK's last requests:\n    ${trail.slice(-12).map(show).join('\n    ')}`);
  }
  process.exit(1);
}
