// An upstream MCP server made with the official TypeScript SDK, for CI to
// front: session-based (the SDK's StreamableHTTPServerTransport with a
// session id per initialize), requiring a secret header, as a vendor's
// server might. Its tools: echo (read-only; says which session it ran in),
// add (structured output) and drop_everything, which the front's rules do
// not name and so must never be listed or callable through it.
//
// Usage: UPSTREAM_KEY=<secret> node .ci/upstream-server.mjs PORT
// It prints "upstream listening on http://127.0.0.1:PORT/mcp" when ready.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import {
  CallToolRequestSchema,
  ListToolsRequestSchema,
  isInitializeRequest,
} from '@modelcontextprotocol/sdk/types.js';

const port = Number(process.argv[2]);
const key = process.env.UPSTREAM_KEY;
if (!port || !key) {
  console.error('usage: UPSTREAM_KEY=<secret> node upstream-server.mjs PORT');
  process.exit(2);
}

const tools = [
  {
    name: 'echo',
    description: 'Echoes the text back, with the upstream session it ran in.',
    inputSchema: { type: 'object', properties: { text: { type: 'string', maxLength: 200 } }, required: ['text'] },
    annotations: { readOnlyHint: true, idempotentHint: true, destructiveHint: false, openWorldHint: false },
  },
  {
    name: 'add',
    description: 'Adds two numbers.',
    inputSchema: {
      type: 'object',
      properties: { a: { type: 'number' }, b: { type: 'number' } },
      required: ['a', 'b'],
    },
    outputSchema: { type: 'object', properties: { sum: { type: 'number' } }, required: ['sum'] },
    annotations: { readOnlyHint: true, idempotentHint: true, destructiveHint: false, openWorldHint: false },
  },
  {
    name: 'drop_everything',
    description: 'Deletes everything. No rule of the front names it.',
    inputSchema: { type: 'object', properties: {} },
    annotations: { readOnlyHint: false, destructiveHint: true },
  },
];

// newServer is one MCP server per session, as the SDK's examples keep them.
function newServer() {
  const server = new Server({ name: 'ts-upstream', version: '1.0.0' }, { capabilities: { tools: {} } });
  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools }));
  server.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
    const args = req.params.arguments ?? {};
    switch (req.params.name) {
      case 'echo':
        return { content: [{ type: 'text', text: `${args.text} (session ${extra.sessionId})` }] };
      case 'add': {
        const sum = Number(args.a) + Number(args.b);
        return { content: [{ type: 'text', text: String(sum) }], structuredContent: { sum } };
      }
      case 'drop_everything':
        dropped++;
        return { content: [{ type: 'text', text: 'everything dropped' }] };
      default:
        return { content: [{ type: 'text', text: `unknown tool ${req.params.name}` }], isError: true };
    }
  });
  return server;
}

let dropped = 0;
const sessions = new Map(); // session id -> transport

function readBody(req) {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks = [];
    req.on('data', (c) => {
      size += c.length;
      if (size > 1 << 20) reject(new Error('body too large'));
      else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

const httpServer = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://127.0.0.1');
    if (url.pathname === '/stats') {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ sessions: sessions.size, dropped }));
      return;
    }
    if (url.pathname !== '/mcp') {
      res.writeHead(404).end();
      return;
    }
    if (req.headers['x-api-key'] !== key) {
      res.writeHead(401, { 'Content-Type': 'text/plain' }).end('wrong or missing X-Api-Key');
      return;
    }
    if (req.headers.authorization) {
      // The front must never pass its caller's token through.
      res.writeHead(400, { 'Content-Type': 'text/plain' }).end('unexpected Authorization header');
      return;
    }
    const body = req.method === 'POST' ? JSON.parse((await readBody(req)) || 'null') : undefined;
    const sid = req.headers['mcp-session-id'];
    let transport = sid ? sessions.get(sid) : undefined;
    if (!transport) {
      if (sid || req.method !== 'POST' || !isInitializeRequest(body)) {
        res.writeHead(sid ? 404 : 400, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32000, message: 'no valid session' } }));
        return;
      }
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => sessions.set(id, transport),
      });
      transport.onclose = () => transport.sessionId && sessions.delete(transport.sessionId);
      await newServer().connect(transport);
    }
    await transport.handleRequest(req, res, body);
  } catch (err) {
    if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain' });
    res.end(String(err));
  }
});
httpServer.listen(port, '127.0.0.1', () => console.log(`upstream listening on http://127.0.0.1:${port}/mcp`));
