#!/usr/bin/env python3
"""The cost of the PostgreSQL-compatibility layer, for bench/compat.sh.

    python3 compat.py DSN LABEL [--rows N] [--seconds S] [--dialect quiver|pgvector]

Loads N random 384-d vectors (fixed seed) into a fresh table `compat_items`
with an HNSW index, then runs, over the extended protocol (psycopg server-side
prepared statements), one client for S seconds each:

  select1   SELECT 1
  search10  a 10-nearest-neighbour search with the query vector as a parameter:
            Quiver `vector_search('compat_items', 'embedding', $1, 10)`,
            pgvector `ORDER BY embedding <-> $1 LIMIT 10`
  orderby10 (Quiver only) the pgvector form on Quiver

Prints one JSON object: {"label", "select1_qps", "search10_qps", ...}.
"""
import argparse
import io
import json
import random
import time

import psycopg


def vectors(n: int, dim: int, seed: int):
    rng = random.Random(seed)
    return [[rng.uniform(-1, 1) for _ in range(dim)] for _ in range(n)]


def text(v) -> str:
    return "[" + ",".join(f"{x:.6f}" for x in v) + "]"


def qps(conn, sql: str, params, seconds: float) -> float:
    # prepare=True: Parse once, then Bind/Execute per call (the extended protocol).
    with conn.cursor() as cur:
        for p in params[:20]:
            cur.execute(sql, p, prepare=True)
            cur.fetchall()
        n, i = 0, 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            cur.execute(sql, params[i % len(params)], prepare=True)
            cur.fetchall()
            n += 1
            i += 1
        return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dsn")
    ap.add_argument("label")
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--dialect", choices=["quiver", "pgvector"], required=True)
    a = ap.parse_args()
    dim = 384
    with psycopg.connect(a.dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS compat_items")
        if a.dialect == "pgvector":
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute(f"CREATE TABLE compat_items (id bigint, embedding vector({dim}))")
        data = vectors(a.rows, dim, 7)
        buf = io.StringIO()
        for i, v in enumerate(data):
            buf.write(f"{i}\t{text(v)}\n")
        with conn.cursor().copy("COPY compat_items (id, embedding) FROM STDIN") as cp:
            cp.write(buf.getvalue())
        with_params = "WITH (m = 16, ef_construction = 64)" if a.dialect == "pgvector" else ""
        conn.execute(
            f"CREATE INDEX compat_items_idx ON compat_items USING hnsw (embedding vector_l2_ops) {with_params}"
        )
        if a.dialect == "pgvector":
            conn.execute("ANALYZE compat_items")
        queries = [(text(v),) for v in vectors(200, dim, 8)]
        out = {"label": a.label, "rows": a.rows, "seconds": a.seconds}
        out["select1_qps"] = qps(conn, "SELECT 1", [()], a.seconds)
        order_by = "SELECT id FROM compat_items ORDER BY embedding <-> %s::vector LIMIT 10"
        if a.dialect == "quiver":
            out["search10_qps"] = qps(
                conn,
                "SELECT id FROM vector_search('compat_items', 'embedding', %s::vector, 10)",
                queries,
                a.seconds,
            )
            out["orderby10_qps"] = qps(conn, order_by, queries, a.seconds)
        else:
            out["search10_qps"] = qps(conn, order_by, queries, a.seconds)
    # A fresh connection: psycopg follows DDL with DEALLOCATE ALL on one that
    # prepared statements, which builds before the compatibility work refuse.
    with psycopg.connect(a.dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE compat_items")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
