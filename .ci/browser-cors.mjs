// A real Chromium calling the handler across origins, through the Functions
// host stand-in, as a browser-based MCP client in Azure would. Two pages on
// loopback ports of this script: ALLOWED_ORIGIN (in the host's CORS list
// and MCP_ALLOWED_ORIGINS, one list) and another origin in neither. From
// the allowed origin, the browser's preflights (answered by the host
// stand-in, never by the handler) must let through dynamic registration
// (POST /oauth/register, JSON), an unauthenticated /mcp call whose 401
// exposes WWW-Authenticate, and an authenticated initialize. From the other
// origin, registration must be blocked by the browser, while the public
// metadata stays readable. Nothing here prints a token.
//
// Environment: BASE_URL, ALLOWED_ORIGIN (http://127.0.0.1:<port>), OTHER_PORT,
// DEV_TOKEN, CHROMIUM, OUT_DIR.

import { createServer } from 'node:http';
import { join } from 'node:path';

import { Failure, check, done, need, ok, withChromium } from './lib.mjs';

const base = need('BASE_URL').replace(/\/$/, '');
const allowedOrigin = need('ALLOWED_ORIGIN');
const otherPort = Number(need('OTHER_PORT'));
const token = need('DEV_TOKEN');
const outDir = need('OUT_DIR');

// servePage serves an empty page on 127.0.0.1:port: an origin to call from.
async function servePage(port) {
  const server = createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>origin</title>');
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  return () => new Promise((resolve) => {
    server.closeAllConnections();
    server.close(resolve);
  });
}

// In the page: every call returns what a browser client could read, or
// the error the browser gave when CORS blocked it.
async function inPage(page, base, token) {
  return page.evaluate(async ({ base, token }) => {
    const call = async (path, init) => {
      try {
        const r = await fetch(base + path, init);
        return { status: r.status, wwwAuthenticate: r.headers.get('www-authenticate'), body: await r.text() };
      } catch (err) {
        return { blocked: String(err) };
      }
    };
    const json = { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' };
    return {
      register: await call('/oauth/register', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({
          client_name: 'CORS check',
          redirect_uris: ['http://127.0.0.1:9/callback'],
          token_endpoint_auth_method: 'none',
          grant_types: ['authorization_code'],
          response_types: ['code'],
        }),
      }),
      anonymous: await call('/mcp', {
        method: 'POST', headers: json,
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
      }),
      initialize: await call('/mcp', {
        method: 'POST',
        headers: { ...json, Authorization: `Bearer ${token}`, 'Mcp-Protocol-Version': '2025-06-18' },
        body: JSON.stringify({
          jsonrpc: '2.0', id: 1, method: 'initialize',
          params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'cors-check', version: '1' } },
        }),
      }),
      metadata: await call('/.well-known/oauth-protected-resource/mcp', {}),
    };
  }, { base, token });
}

async function main() {
  const allowedPort = Number(new URL(allowedOrigin).port);
  const closers = [await servePage(allowedPort), await servePage(otherPort)];
  try {
    await withChromium({ failureShot: join(outDir, 'cors-failure.png') }, async (context) => {
      const page = await context.newPage();

      await page.goto(`${allowedOrigin}/`);
      const allowed = await inPage(page, base, token);
      check(allowed.register.status === 201, `registration from ${allowedOrigin}: ${JSON.stringify(allowed.register.blocked ?? allowed.register.status)}, want 201`);
      check(typeof JSON.parse(allowed.register.body).client_id === 'string', 'registration from the allowed origin returned no client_id');
      ok(`a browser at the allowed origin registers a client: the host stand-in's preflight let POST /oauth/register through (201)`);
      check(allowed.anonymous.status === 401, `anonymous /mcp from the allowed origin: ${JSON.stringify(allowed.anonymous.blocked ?? allowed.anonymous.status)}, want 401`);
      check(/resource_metadata=/.test(allowed.anonymous.wwwAuthenticate ?? ''), `the 401's WWW-Authenticate is not readable across origins (got ${allowed.anonymous.wwwAuthenticate})`);
      ok('its unauthenticated /mcp call gets 401 and can read WWW-Authenticate (exposed)');
      check(allowed.initialize.status === 200, `initialize from the allowed origin: ${JSON.stringify(allowed.initialize.blocked ?? allowed.initialize.status)}, want 200`);
      check(allowed.initialize.body.includes('protocolVersion'), 'initialize from the allowed origin returned no protocolVersion');
      ok('with a token it initializes (Authorization and Mcp-Protocol-Version preflighted)');

      await page.goto(`http://127.0.0.1:${otherPort}/`);
      const other = await inPage(page, base, token);
      check(other.register.blocked !== undefined, `registration from an origin not in the list was not blocked (status ${other.register.status})`);
      check(other.initialize.blocked !== undefined, `/mcp from an origin not in the list was not blocked (status ${other.initialize.status})`);
      ok('a browser at an origin not in the list cannot register or call /mcp (its preflights carry no Allow-Origin)');
      check(other.metadata.status === 200 && other.metadata.body.includes('authorization_servers'), `Protected Resource Metadata not readable from any origin: ${JSON.stringify(other.metadata.blocked ?? other.metadata.status)}`);
      ok('the public metadata is readable from any origin');
    });
  } finally {
    for (const close of closers) await close();
  }
}

const t0 = Date.now();
try {
  await main();
  console.log(`browser CORS: all ${done.length} checks ok (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
} catch (err) {
  if (err instanceof Failure) {
    console.error(`browser CORS FAILED: ${err.message}`);
  } else {
    console.error(`browser CORS FAILED with an error: ${err?.stack ?? err}`);
  }
  process.exit(1);
}
