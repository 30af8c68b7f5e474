// The benchmark's peer (P1): PostGraphile 5 serving Parvis's read-model tables (schema `read`) as they are.
//
//   DATABASE_URL=postgres://... PORT=5678 JWT_KEY_HEX=... node server.mjs
//
// Isolation is the same as Parvis's API: each request runs in a transaction as the non-owner role `parvis_app`,
// with the caller's scope set by set_config(..., true), so the tables' row-level security applies. The caller is
// the bearer of a Parvis access token (HS256, verified with the same key); PostGraphile connects as the database
// owner only to introspect and to switch role.
import { createServer } from "node:http";

import { PgAggregatesPreset } from "@graphile/pg-aggregates";
import jwt from "jsonwebtoken";
import { postgraphile } from "postgraphile";
import { makePgService } from "postgraphile/adaptors/pg";
import { grafserv } from "postgraphile/grafserv/node";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";
import { PostGraphileConnectionFilterPreset } from "postgraphile-plugin-connection-filter";

const key = Buffer.from(process.env.JWT_KEY_HEX ?? "", "hex");
const port = Number(process.env.PORT ?? 5678);

const preset = {
  extends: [PostGraphileAmberPreset, PostGraphileConnectionFilterPreset, PgAggregatesPreset],
  // Filters and orders on every column, as Parvis's own queries use them (by default only indexed columns get them).
  disablePlugins: ["PgIndexBehaviorsPlugin"],
  pgServices: [
    makePgService({
      connectionString: process.env.DATABASE_URL,
      schemas: ["read"],
      poolConfig: { max: Number(process.env.POOL_SIZE ?? 10) },
    }),
  ],
  grafserv: { port, graphqlPath: "/graphql", graphiql: false, watch: false, websockets: false },
  grafast: {
    explain: false,
    context(requestContext) {
      const header = requestContext.node?.req?.headers?.authorization ?? "";
      let agency = "";
      try {
        agency = jwt.verify(header.replace(/^Bearer /i, ""), key, { algorithms: ["HS256"] }).agy ?? "";
      } catch {
        agency = "";  // no scope: row-level security shows nothing
      }
      return { pgSettings: { role: "parvis_app", "parvis.tenants": "", "parvis.agency": agency } };
    },
  },
};

const pgl = postgraphile(preset);
const serv = pgl.createServ(grafserv);
const server = createServer();
server.on("error", (e) => {
  console.error(e);
  process.exit(1);
});
await serv.addTo(server);
server.listen(port, "127.0.0.1", () => console.log(`peer listening on ${port}`));
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}
