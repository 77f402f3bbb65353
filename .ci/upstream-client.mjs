// Federation through our endpoint with the official MCP TypeScript SDK's
// client: the handler (dev mode, under the Functions host stand-in) fronts
// .ci/upstream-server.mjs, the SDK's session-based server, as upstream
// "ts" (echo needs tasks.read, add tasks.write; drop_everything is in no
// rule). As each demo user it checks:
//   1. tools/list shows exactly the upstream tools the user's permissions
//      allow, prefixed, and never ts.drop_everything;
//   2. a permitted call runs upstream and its result (text, structured
//      content) comes back;
//   3. a forbidden upstream tool, an unlisted one and a made-up one fail
//      alike, as an unknown tool, and the unlisted one never ran upstream;
//   4. two users run in two different upstream sessions.
//
// Environment: MCP_URL (our endpoint), TOKENS (dev mode's tokens file),
// UPSTREAM_STATS (the upstream's /stats URL). Tokens are never printed.

import { readFileSync } from 'node:fs';

import { Failure, check, done, need, ok, require } from './lib.mjs';

const { Client } = require('@modelcontextprotocol/sdk/client/index.js');
const { StreamableHTTPClientTransport } = require('@modelcontextprotocol/sdk/client/streamableHttp.js');

const mcpURL = need('MCP_URL');
const tokens = JSON.parse(readFileSync(need('TOKENS'), 'utf8'));
const statsURL = need('UPSTREAM_STATS');

// What each demo user may use upstream, from the rules CI configures.
const allowed = { reader: ['ts.echo'], writer: ['ts.add'], all: ['ts.add', 'ts.echo'], admin: [] };

async function connect(user) {
  const transport = new StreamableHTTPClientTransport(new URL(mcpURL), {
    requestInit: { headers: { Authorization: `Bearer ${tokens[user]}` } },
  });
  const client = new Client({ name: 'upstream-client', version: '1.0.0' });
  await client.connect(transport);
  return client;
}

// failure is what a call that fails says, with the tool's name taken out.
async function failure(client, name, args) {
  try {
    const res = await client.callTool({ name, arguments: args });
    return `ran: ${JSON.stringify(res).slice(0, 200)}`;
  } catch (err) {
    return String(err.message).replaceAll(name, 'X');
  }
}

async function main() {
  const sessions = {};
  for (const [user, want] of Object.entries(allowed)) {
    const client = await connect(user);
    const { tools } = await client.listTools();
    const upstream = tools.map((t) => t.name).filter((n) => n.startsWith('ts.')).sort();
    check(JSON.stringify(upstream) === JSON.stringify(want), `${user} lists ${upstream}, want ${want}`);
    ok(`${user}: tools/list holds exactly the upstream tools its permissions allow (${want.join(', ') || 'none'})`);

    if (want.includes('ts.echo')) {
      const res = await client.callTool({ name: 'ts.echo', arguments: { text: `hello from ${user}` } });
      const text = res.content?.[0]?.text ?? '';
      check(!res.isError && text.startsWith(`hello from ${user} (session `), `${user}: ts.echo answered ${JSON.stringify(res)}`);
      sessions[user] = text.slice(text.indexOf('(session ') + 9, -1);
      ok(`${user}: ts.echo ran upstream`);
    }
    if (want.includes('ts.add')) {
      const res = await client.callTool({ name: 'ts.add', arguments: { a: 2, b: 3 } });
      check(!res.isError && res.structuredContent?.sum === 5, `${user}: ts.add answered ${JSON.stringify(res)}`);
      ok(`${user}: ts.add's structured content came back`);
    }

    const unknown = await failure(client, 'ts.no_such_tool', {});
    check(unknown.startsWith('MCP error'), `${user}: a made-up tool: ${unknown}`);
    for (const name of ['ts.drop_everything', ...['ts.echo', 'ts.add'].filter((n) => !want.includes(n))]) {
      const got = await failure(client, name, { text: 'x', a: 1, b: 1 });
      check(got === unknown, `${user}: ${name} failed with "${got}", an unknown tool with "${unknown}"`);
    }
    ok(`${user}: forbidden and unlisted upstream tools fail exactly as an unknown tool`);
    await client.close();
  }

  check(sessions.reader && sessions.all && sessions.reader !== sessions.all, `reader and all ran in sessions ${JSON.stringify(sessions)}`);
  ok('two users ran in two upstream sessions');
  const stats = await (await fetch(statsURL)).json();
  check(stats.dropped === 0, `drop_everything ran upstream ${stats.dropped} times`);
  ok('the unlisted tool never ran upstream');
}

const t0 = Date.now();
try {
  await main();
  console.log(`upstream SDK client: all ${done.length} checks ok (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
} catch (err) {
  console.error(`upstream SDK client FAILED: ${err instanceof Failure ? err.message : (err?.stack ?? err)}`);
  process.exit(1);
}
