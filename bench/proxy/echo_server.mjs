// The TypeScript upstream for the proxy benchmark: a stateless MCP server with an echo tool.
//
//     node bench/proxy/echo_server.mjs PORT [--workers N]
//
// Built with the official TypeScript SDK (@modelcontextprotocol/sdk), resolved from
// tests/peers/mcp/node_modules (a dependency of server-everything there): the SDK's
// `McpServer` (the echo tool's input schema in zod) behind its `StreamableHTTPServerTransport`, stateless (no session id)
// with JSON responses, on node's own http server bound to 127.0.0.1. As the SDK asks of
// stateless servers, each request gets a fresh server and transport, closed when the
// response is. The same tool as echo_server.py (`echo`, `{text}` -> that text), so the
// proxy's numbers against both upstreams compare; this one costs far less CPU per call,
// which shows Warden's own ceiling. `--workers N` forks N processes on one port (node's
// cluster module).

import cluster from 'node:cluster';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const peers = createRequire(path.join(here, '..', '..', 'tests', 'peers', 'mcp', 'package.json'));
const { McpServer } = peers('@modelcontextprotocol/sdk/server/mcp.js');
const { StreamableHTTPServerTransport } = peers('@modelcontextprotocol/sdk/server/streamableHttp.js');
const { AjvJsonSchemaValidator } = peers('@modelcontextprotocol/sdk/validation/ajv');
const { z } = peers('zod');

const MAX_BODY = 4 * 1024 * 1024;
const MAX_IDLE = 256;
const idle = [];
// one JSON Schema validator for every per-request server: building one (an Ajv instance and
// its meta-schemas) is what a fresh server costs most, ~0.6 ms of CPU per request
const validator = new AjvJsonSchemaValidator();

function mcpServer() {
  const server = new McpServer({ name: 'bench-echo-ts', version: '0.1.0' }, { jsonSchemaValidator: validator });
  server.registerTool(
    'echo',
    { description: 'Echo the text back.', inputSchema: { text: z.string() } },
    async ({ text }) => ({ content: [{ type: 'text', text }] }),
  );
  return server;
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new Error('body too large'));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch (e) {
        reject(e);
      }
    });
    req.on('error', reject);
  });
}

function reply(res, status, id, code, message) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', id: id ?? null, error: { code, message } }));
}

async function handle(req, res) {
  if (req.url !== '/mcp') return reply(res, 404, null, -32601, 'not found');
  if (req.method !== 'POST') return reply(res, 405, null, -32000, 'Method not allowed.'); // no sessions, no GET stream
  let body;
  try {
    body = await readJson(req);
  } catch {
    return reply(res, 400, null, -32700, 'Parse error');
  }
  // a fresh transport per request, as the SDK requires of stateless servers; the server (its
  // tool registered once) is closed after the response and reused, as the SDK allows
  const server = idle.pop() ?? mcpServer();
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  res.on('close', () => {
    server.close().then(() => {
      if (idle.length < MAX_IDLE) idle.push(server);
    });
  });
  await server.connect(transport);
  await transport.handleRequest(req, res, body);
}

function serve(port) {
  const srv = http.createServer((req, res) => {
    handle(req, res).catch((e) => {
      if (!res.headersSent) reply(res, 500, null, -32603, 'Internal server error');
      else res.destroy(e);
    });
  });
  srv.keepAliveTimeout = 60_000;
  srv.listen(port, '127.0.0.1');
  const stop = () => srv.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

const args = process.argv.slice(2);
const port = Number(args[0]);
const wi = args.indexOf('--workers');
const workers = wi >= 0 ? Number(args[wi + 1]) : 1;
if (!Number.isInteger(port) || port <= 0 || !Number.isInteger(workers) || workers < 1) {
  console.error('usage: node echo_server.mjs PORT [--workers N]');
  process.exit(2);
}
if (workers > 1 && cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
  const stop = () => {
    for (const w of Object.values(cluster.workers)) w.kill('SIGTERM');
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  serve(port);
}
