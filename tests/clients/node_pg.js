// node-postgres (the `pg` package) against Quiver: what a Node.js
// application storing and searching embeddings does. Run by the integration
// tests as `node node_pg.js PORT`, with NODE_PATH naming the node_modules of
// tests/clients/node (installed by .ci/run). Exits non-zero on the first
// failed check.
'use strict';

const assert = require('node:assert/strict');
const { Client, Pool } = require('pg');

const port = Number(process.argv[2]);
const config = { host: '127.0.0.1', port, user: 'node', database: 'quiver' };

// A deterministic embedding: text → 4 floats.
function embed(text) {
  const v = [0, 0, 0, 0];
  for (let i = 0; i < text.length; i++) v[i % 4] += text.charCodeAt(i) / 100;
  return v;
}
const vec = (v) => `[${v.join(',')}]`;

async function expectError(client, sql, params, code) {
  try {
    await client.query(sql, params);
  } catch (e) {
    assert.equal(e.code, code, `${sql}: ${e.message}`);
    return e;
  }
  assert.fail(`${sql} did not fail`);
}

async function main() {
  const client = new Client({ ...config, application_name: 'node-test' });
  await client.connect();

  const version = await client.query('SELECT version()');
  assert.match(version.rows[0].version, /PostgreSQL/);
  const app = await client.query("SELECT current_setting('application_name') AS a");
  assert.equal(app.rows[0].a, 'node-test');

  await client.query('CREATE EXTENSION IF NOT EXISTS vector');
  await client.query(`CREATE TABLE items (
      id BIGSERIAL PRIMARY KEY,
      uid UUID DEFAULT gen_random_uuid(),
      title VARCHAR(40) NOT NULL,
      meta JSONB,
      created TIMESTAMPTZ DEFAULT now(),
      embedding VECTOR(4))`);

  // Parameterised inserts (extended protocol, text parameters).
  const titles = ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta'];
  for (const [i, t] of titles.entries()) {
    const r = await client.query(
      'INSERT INTO items (title, meta, embedding) VALUES ($1, $2, $3) RETURNING id, uid, created',
      [t, { n: i, even: i % 2 === 0, tags: [t[0]] }, vec(embed(t))],
    );
    assert.equal(r.rowCount, 1);
    // bigint comes back as a string, uuid as its text, timestamptz as a Date.
    assert.equal(r.rows[0].id, String(i + 1));
    assert.match(r.rows[0].uid, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.ok(r.rows[0].created instanceof Date, 'timestamptz parses as a Date');
  }

  // jsonb parses to an object; the JSON operators filter.
  const meta = await client.query("SELECT meta FROM items WHERE title = 'gamma'");
  assert.deepEqual(meta.rows[0].meta, { n: 2, even: true, tags: ['g'] });
  const evens = await client.query(
    "SELECT title FROM items WHERE meta @> $1 ORDER BY id",
    [JSON.stringify({ even: true })],
  );
  assert.deepEqual(evens.rows.map((r) => r.title), ['alpha', 'gamma', 'epsilon']);

  // Nearest neighbours with the query vector as a parameter, and a filter.
  const q = vec(embed('gamma'));
  const knn = await client.query(
    'SELECT title, embedding <-> $1 AS distance FROM items ORDER BY embedding <-> $1 LIMIT 3',
    [q],
  );
  assert.equal(knn.rows[0].title, 'gamma');
  assert.equal(knn.rows[0].distance, 0);
  assert.equal(knn.rows.length, 3);
  const filtered = await client.query(
    "SELECT title FROM items WHERE (meta ->> 'n')::int >= $2 ORDER BY embedding <=> $1 LIMIT 2",
    [q, 3],
  );
  assert.equal(filtered.rows.length, 2);
  for (const r of filtered.rows) assert.ok(['delta', 'epsilon', 'zeta'].includes(r.title));
  // The vector comes back in pgvector's text form (shortest float32 digits).
  const v = await client.query('SELECT embedding FROM items WHERE id = $1', [3]);
  assert.match(v.rows[0].embedding, /^\[[^\]]+\]$/);
  assert.deepEqual(
    JSON.parse(v.rows[0].embedding).map(Math.fround),
    embed('gamma').map(Math.fround),
  );

  // A named prepared statement, run twice; arrays come back as JS arrays.
  const named = { name: 'by_prefix', text: 'SELECT array_agg(title ORDER BY title) AS t FROM items WHERE title LIKE $1' };
  const a = await client.query({ ...named, values: ['%a'] });
  assert.deepEqual(a.rows[0].t, ['alpha', 'beta', 'delta', 'gamma', 'zeta']);
  const e = await client.query({ ...named, values: ['e%'] });
  assert.deepEqual(e.rows[0].t, ['epsilon']);

  // Row mode arrays and field metadata, as query builders read them.
  const rows = await client.query({ text: 'SELECT count(*), 1 FROM items', rowMode: 'array' });
  assert.deepEqual(rows.fields.map((f) => f.name), ['count', '?column?']);
  assert.deepEqual(rows.rows[0], ['6', 1]);

  // Errors carry their SQLSTATE, and the connection stays usable.
  await expectError(client, 'INSERT INTO items (id, title) VALUES ($1, $2)', [1, 'dup'], '23505');
  await expectError(client, 'INSERT INTO items (title) VALUES (NULL)', [], '23502');
  await expectError(client, "INSERT INTO items (title, embedding) VALUES ('x', '[1,2]')", [], '22000');
  await expectError(client, 'SELECT * FROM nowhere', [], '42P01');
  await expectError(client, 'SELEC 1', [], '42601');
  assert.equal((await client.query('SELECT 1 AS one')).rows[0].one, 1);

  // Transactions: ROLLBACK discards, COMMIT publishes, an error aborts.
  await client.query('BEGIN');
  await client.query("INSERT INTO items (title, embedding) VALUES ('gone', '[0,0,0,1]')");
  assert.equal((await client.query("SELECT count(*) FROM items WHERE title = 'gone'")).rows[0].count, '1');
  await client.query('ROLLBACK');
  assert.equal((await client.query("SELECT count(*) FROM items WHERE title = 'gone'")).rows[0].count, '0');
  await client.query('BEGIN');
  await expectError(client, 'SELECT * FROM nowhere', [], '42P01');
  await expectError(client, 'SELECT 1', [], '25P02');
  await client.query('ROLLBACK');

  // A pool of connections writing and searching at once.
  const pool = new Pool({ ...config, max: 4 });
  await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      pool.query('INSERT INTO items (title, embedding) VALUES ($1, $2)', [`p${i}`, vec(embed(`p${i}`))]),
    ),
  );
  const searches = await Promise.all(
    Array.from({ length: 8 }, (_, i) =>
      pool.query('SELECT title FROM items ORDER BY embedding <-> $1 LIMIT 1', [vec(embed(`p${i}`))]),
    ),
  );
  searches.forEach((r, i) => assert.equal(r.rows[0].title, `p${i}`));
  await pool.end();
  assert.equal((await client.query('SELECT count(*) FROM items')).rows[0].count, '26');

  await client.query('DROP TABLE items');
  await client.end();
  console.log('node-postgres: all checks passed');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
