// A loopback reverse proxy that authenticates the MCP conformance suite.
//
// Our /mcp endpoint wants an Entra bearer token and the suite cannot send
// headers. Some of its scenarios send raw requests (node:http, undici) that
// no fetch wrapper reaches, and then meet a 401 instead of the behaviour
// they test. The suite is pointed at this proxy instead: it forwards every
// request to UPSTREAM as it came (method, path, headers with their casing,
// Host and Origin included, body, streamed answer) and adds one header,
// "Authorization: Bearer $TOKEN_PROXY_TOKEN", to requests that carry none.
// The token goes to UPSTREAM only.
//
// Environment: TOKEN_PROXY_PORT (listens on 127.0.0.1:PORT), UPSTREAM (an
// http or https origin), TOKEN_PROXY_TOKEN (optional: without it, nothing
// is added). Prints one line when it listens.

import http from 'node:http';
import https from 'node:https';

const port = Number(process.env.TOKEN_PROXY_PORT);
const upstream = new URL(process.env.UPSTREAM ?? '');
const token = process.env.TOKEN_PROXY_TOKEN ?? '';
if (!Number.isInteger(port) || port <= 0 || !['http:', 'https:'].includes(upstream.protocol)) {
  console.error('token-proxy: TOKEN_PROXY_PORT and an http(s) UPSTREAM are required');
  process.exit(2);
}
const client = upstream.protocol === 'https:' ? https : http;

// Hop-by-hop headers (RFC 9110 7.6.1) belong to one connection, not the
// message; Node sets its own on each side.
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization',
  'te', 'trailer', 'transfer-encoding', 'upgrade',
]);

// endToEnd keeps a message's raw [name, value, ...] list minus hop-by-hop
// headers, in order and with the sender's casing.
function endToEnd(raw) {
  const out = [];
  for (let i = 0; i < raw.length; i += 2) {
    if (!HOP_BY_HOP.has(raw[i].toLowerCase())) out.push(raw[i], raw[i + 1]);
  }
  return out;
}

const server = http.createServer((req, res) => {
  const headers = endToEnd(req.rawHeaders);
  if (token && req.headers.authorization === undefined) {
    headers.push('Authorization', `Bearer ${token}`);
  }
  const out = client.request({
    protocol: upstream.protocol,
    hostname: upstream.hostname,
    port: upstream.port,
    method: req.method,
    path: req.url,
    headers,
    // A Host the suite sets on purpose (DNS rebinding) must reach the
    // server as sent.
    setHost: false,
  });
  out.on('response', (answer) => {
    res.writeHead(answer.statusCode, answer.statusMessage, endToEnd(answer.rawHeaders));
    answer.pipe(res);
  });
  out.on('error', (err) => {
    if (res.headersSent) {
      res.destroy(err);
      return;
    }
    res.writeHead(502, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ error: 'upstream_unreachable', error_description: err.code ?? 'error' }));
  });
  // The client hung up (the suite aborts streams it has read enough of):
  // stop the upstream request too.
  res.on('close', () => out.destroy());
  req.pipe(out);
});

server.listen(port, '127.0.0.1', () => {
  console.log(`token-proxy: 127.0.0.1:${port} -> ${upstream.origin}${token ? ' (adds the bearer token)' : ''}`);
});
