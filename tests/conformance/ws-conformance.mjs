// graphql-transport-ws: the graphql-ws client against a running Parvis; prints one JSON document of checks.
//
//   node ws-conformance.mjs HTTP_URL TOKEN TENANT_ID
//
// Checks (each an object in the output, under its name):
// - query: a query sent over the socket gets `next` then the server's `complete`;
// - subscription: `history(tenantId)` receives the event of a rename made over HTTP, then the client completes it;
// - closed: the client's own close after that (code 1000);
// - badToken: a bad token in connection_init (close code expected 4403);
// - otherSubprotocol / noSubprotocol: a handshake without graphql-transport-ws;
// - foreignOrigin / sameOrigin: a browser handshake from another origin, and from the server's own.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [httpUrl, token, tenantId] = process.argv.slice(2);
if (!httpUrl || !token || !tenantId) {
  console.error('usage: node ws-conformance.mjs HTTP_URL TOKEN TENANT_ID');
  process.exit(2);
}
const wsUrl = httpUrl.replace(/^http/, 'ws');
const withTimeout = (promise, ms, what) =>
  Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms))]);

function client(authorization, closed) {
  return createClient({
    url: wsUrl,
    webSocketImpl: WebSocket,
    connectionParams: { Authorization: authorization },
    lazy: false,
    retryAttempts: 0,
    shouldRetry: () => false,
    onNonLazyError: () => {},
    on: { closed: (event) => closed(event) },
  });
}

async function queryAndSubscription() {
  let closeEvent;
  const closedPromise = new Promise((resolve) => {
    closeEvent = resolve;
  });
  const c = client(`Bearer ${token}`, (event) => closeEvent(event));
  const out = {};

  // A query over the socket: one `next`, then the server completes the operation.
  const messages = [];
  out.query = await withTimeout(
    new Promise((resolve) => {
      c.subscribe(
        { query: '{ me { email } }' },
        {
          next: (value) => messages.push(value),
          error: (error) => resolve({ messages, error: String(error?.message ?? JSON.stringify(error)) }),
          complete: () => resolve({ messages, completedByServer: true }),
        },
      );
    }),
    10000,
    'query over WebSocket',
  );

  // A subscription: receive the event of a rename, then complete it from the client.
  const iterator = c.iterate({
    query: 'subscription($t: ID!) { history(tenantId: $t) { type data } }',
    variables: { t: tenantId },
  });
  const first = iterator.next();
  await new Promise((resolve) => setTimeout(resolve, 700)); // the server starts following the tenant
  const renamed = await fetch(httpUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({
      query: 'mutation($i: UpdateTenantInput!) { updateTenant(input: $i) { tenant { name } userErrors { code } } }',
      variables: { i: { tenantId, name: 'Renamed over HTTP for graphql-ws' } },
    }),
  }).then((r) => r.json());
  const received = await withTimeout(first, 10000, 'subscription event');
  const done = await iterator.return(); // sends `complete` to the server
  out.subscription = { mutation: renamed, received: received.value, completedByClient: done.done === true };

  await c.dispose();
  const closed = await withTimeout(closedPromise, 5000, 'close');
  out.closed = { code: closed.code };
  return out;
}

async function badToken() {
  return withTimeout(
    new Promise((resolve) => {
      const c = client('Bearer not-a-token', (event) => resolve({ code: event.code, reason: event.reason }));
      c.subscribe({ query: '{ me { email } }' }, { next: () => {}, error: () => {}, complete: () => {} });
    }),
    10000,
    'bad token',
  );
}

// A raw handshake: what the server does with a subprotocol or an origin (accepted, closed, or refused).
function handshake(protocols, headers = {}) {
  return withTimeout(
    new Promise((resolve) => {
      const socket = new WebSocket(wsUrl, protocols, { headers });
      socket.on('unexpected-response', (_req, res) => resolve({ accepted: false, httpStatus: res.statusCode }));
      socket.on('open', () => {
        const result = { accepted: true, protocol: socket.protocol };
        socket.on('close', (code) => resolve({ ...result, closeCode: code }));
        socket.send(JSON.stringify({ type: 'connection_init', payload: { Authorization: `Bearer ${token}` } }));
        socket.on('message', (data) => {
          result.firstMessage = JSON.parse(String(data)).type;
          socket.close(1000);
        });
      });
      socket.on('error', (error) => resolve({ accepted: false, error: error.message }));
    }),
    10000,
    'handshake',
  );
}

const origin = new URL(httpUrl).origin;
const results = {
  ...(await queryAndSubscription()),
  badToken: await badToken(),
  otherSubprotocol: await handshake(['graphql-ws']),
  noSubprotocol: await handshake([]),
  foreignOrigin: await handshake(['graphql-transport-ws'], { Origin: 'https://attacker.example' }),
  sameOrigin: await handshake(['graphql-transport-ws'], { Origin: origin }),
};
process.stdout.write(JSON.stringify(results, null, 2) + '\n');
process.exit(0);
