"""asyncpg (binary protocol, types introspected through pg_type) with
pgvector-python's register_vector."""
import asyncio

import asyncpg
import numpy as np
from pgvector.asyncpg import register_vector

from common import PORT, check, nearest, vectors

base = vectors(120, 6, 3)


async def main():
    conn = await asyncpg.connect(host="127.0.0.1", port=PORT, user="postgres", database="postgres")
    await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    await register_vector(conn)
    await conn.execute("CREATE TABLE aitems (id bigint, content text, n int4, embedding vector(6))")
    await conn.executemany(
        "INSERT INTO aitems (id, content, n, embedding) VALUES ($1, $2, $3, $4)",
        [(i, f"doc {i}", i % 5, v) for i, v in enumerate(base[:60])],
    )
    # Binary COPY from records.
    await conn.copy_records_to_table(
        "aitems", records=[(i, None, i % 5, v) for i, v in enumerate(base[60:], start=60)],
        columns=["id", "content", "n", "embedding"],
    )
    check(await conn.fetchval("SELECT count(*) FROM aitems") == 120, "count")
    q = base[11]
    stmt = await conn.prepare("SELECT id, content, embedding FROM aitems ORDER BY embedding <-> $1 LIMIT 5")
    for _ in range(2):
        rows = await stmt.fetch(q)
        check([r["id"] for r in rows] == nearest(base, q, 5), f"{[r['id'] for r in rows]}")
        check(np.array_equal(rows[0]["embedding"], q) and rows[0]["content"] == "doc 11", f"{rows[0]}")
    rows = await conn.fetch(
        "SELECT id, embedding <=> $1 AS d FROM aitems WHERE n = $2 ORDER BY embedding <=> $1 LIMIT 3", q, 1)
    check(rows[0]["id"] == 11 and abs(rows[0]["d"]) < 1e-6, f"{rows}")
    check(all(r["id"] % 5 == 1 for r in rows), "filter")
    try:
        await conn.fetch("SELECT id FROM aitems ORDER BY embedding <-> $1 LIMIT 1", np.zeros(2))
        raise AssertionError("dimension mismatch accepted")
    except asyncpg.exceptions.DataError as e:
        check(e.sqlstate == "22000", e.sqlstate)
    check(await conn.fetchval("SELECT 1") == 1, "connection usable after an error")
    # Types asyncpg has no codec for are introspected through pg_type.
    check(await conn.fetchval("SELECT 'vector'::regtype::oid") > 0, "regtype")
    # Array parameters (binary format), as asyncpg's own introspection sends them.
    rows = await conn.fetch("SELECT typname FROM pg_type WHERE oid = any($1::oid[]) ORDER BY oid", [16, 25])
    check([r["typname"] for r in rows] == ["bool", "text"], f"oid[] parameter {rows}")
    n = await conn.fetchval("SELECT count(*) FROM aitems WHERE content = any($1::text[])", ["doc 3", "doc 4", None])
    check(n == 2, f"text[] parameter {n}")
    # uuid and jsonb columns: asyncpg's own codecs, binary both ways.
    import uuid

    await conn.execute("CREATE TABLE ameta (id uuid PRIMARY KEY, meta jsonb)")
    u = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    await conn.execute("INSERT INTO ameta VALUES ($1, $2)", u, '{"b": 1, "a": [true]}')
    row = await conn.fetchrow("SELECT id, meta, meta -> 'a' AS a FROM ameta WHERE id = $1", u)
    check(row["id"] == u and row["meta"] == '{"a": [true], "b": 1}', f"uuid/jsonb {row}")
    check(row["a"] == "[true]", f"-> {row}")
    # numeric: asyncpg's binary codec both ways.
    from decimal import Decimal

    await conn.execute("CREATE TABLE aprice (id int PRIMARY KEY, price numeric(8,3), qty numeric)")
    await conn.executemany("INSERT INTO aprice VALUES ($1, $2, $3)",
                           [(1, Decimal("1.0005"), Decimal("2.5")), (2, Decimal("-99999.999"), None)])
    rows = await conn.fetch("SELECT id, price, qty FROM aprice WHERE price < $1 ORDER BY id", Decimal("10"))
    check([tuple(r) for r in rows] == [(1, Decimal("1.001"), Decimal("2.5")), (2, Decimal("-99999.999"), None)],
          f"numeric {rows}")
    # A parameter cast in the query is described as that type, so asyncpg
    # encodes its own objects for it (it refuses them for a text parameter).
    import datetime

    await conn.execute("CREATE TABLE aev (id int, at timestamptz, day date, t time)")
    await conn.execute("INSERT INTO aev VALUES (1, now(), '2026-01-02', '10:00')")
    for q, arg in [
        ("SELECT count(*) FROM aev WHERE at > now() - $1::interval", datetime.timedelta(hours=1)),
        ("SELECT count(*) FROM aev WHERE day = $1::date", datetime.date(2026, 1, 2)),
        ("SELECT count(*) FROM aev WHERE t < $1::time", datetime.time(11, 0)),
        ("SELECT count(*) FROM aprice WHERE price > $1::numeric", Decimal("1")),
    ]:
        n = await conn.fetchval(q, arg)
        check(n == 1, f"{q}: {n}")
    iv = await conn.fetchval("SELECT $1::interval", datetime.timedelta(days=-2, microseconds=7))
    check(iv == datetime.timedelta(days=-2, microseconds=7), f"interval round trip {iv}")
    await conn.close()


asyncio.run(main())
print("asyncpg: ok")
