// Drives pgwarden with node-postgres named queries (protocol-level prepared
// statements, prepared once per connection and reused), many connections
// over few servers, and checks every answer. Usage: node node_pg.js URL
// (run with NODE_PATH pointing at a node_modules that has `pg`).
const { Client } = require('pg');

async function one(url, i) {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    for (let j = 0; j < 30; j++) {
      const r = await c.query({ name: 'add', text: 'SELECT $1::int + $2::int AS v', values: [i, j] });
      if (r.rows[0].v !== i + j) throw new Error(`add ${i} ${j} -> ${r.rows[0].v}`);
      const t = await c.query({ name: 'txt', text: "SELECT $1::text || '/' || $2::text AS t", values: [i, j] });
      if (t.rows[0].t !== `${i}/${j}`) throw new Error(`txt ${i} ${j} -> ${t.rows[0].t}`);
    }
  } finally {
    await c.end();
  }
}

(async () => {
  const url = process.argv[2];
  await Promise.all(Array.from({ length: 40 }, (_, i) => one(url, i)));
  console.log('OK');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
