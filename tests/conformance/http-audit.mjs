// GraphQL over HTTP: runs graphql-http's server audits against a running Parvis and prints one JSON document.
//
//   node http-audit.mjs URL [TOKEN]
//
// With TOKEN, every audit request carries `Authorization: Bearer TOKEN`, as an agency front end's would.
// Output: {"results": [{"id", "name", "level", "status", "reason"?, "responseStatus"?}, ...]} on stdout.
import { serverAudits } from 'graphql-http';

const [url, token] = process.argv.slice(2);
if (!url) {
  console.error('usage: node http-audit.mjs URL [TOKEN]');
  process.exit(2);
}

function authorised(input, init = {}) {
  const headers = new Headers(init.headers);
  if (token) headers.set('authorization', `Bearer ${token}`);
  return fetch(input, { ...init, headers });
}

const results = [];
for (const audit of serverAudits({ url, fetchFn: authorised })) {
  const result = await audit.fn();
  const entry = { id: result.id, name: result.name, level: result.name.split(' ')[0], status: result.status };
  if (result.status !== 'ok') {
    entry.reason = result.reason;
    entry.responseStatus = result.response?.status;
  }
  results.push(entry);
}
process.stdout.write(JSON.stringify({ results }, null, 2) + '\n');
