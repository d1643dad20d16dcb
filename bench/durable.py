#!/usr/bin/env python3
"""Write throughput with durable commits: one COPY of --rows wordnet rows
(rows/s), one-row INSERT statements from one client for --seconds
(statements/s, p50/p99 latency), and the same from --clients clients at once
(where group commit shares one disk sync among concurrent commits). Run it
against a server that syncs (Quiver's default `[storage] fsync = true`,
PostgreSQL's default fsync = on, synchronous_commit = on) and, for the cost
of durability, one that does not.

    python3 bench/durable.py --dsn DSN --label quiver --out FILE.json
"""
import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psycopg

HERE = Path(__file__).resolve().parent
SHARED = Path(__import__("os").environ.get("SHARED_BENCH", HERE / "../../shared/bench")).resolve()
sys.path.insert(0, str(SHARED))
import harness  # noqa: E402

CREATE = "CREATE TABLE {t} (id BIGINT, text TEXT, embedding VECTOR(384))"
INSERT = "INSERT INTO {t} VALUES (%s, %s, %s::vector)"


def inserts(dsn, table, rows, seconds, clients):
    """One-row INSERTs from `clients` connections for `seconds`; statements/s and latency."""
    lat = [[] for _ in range(clients)]
    stop = time.perf_counter() + seconds

    def run(c):
        with psycopg.connect(dsn, autocommit=True) as conn:
            i = c
            while time.perf_counter() < stop:
                r = rows[i % len(rows)]
                t0 = time.perf_counter()
                conn.execute(INSERT.format(t=table), (1_000_000 + i, r[1], r[2]), prepare=True)
                lat[c].append(time.perf_counter() - t0)
                i += clients

    t0 = time.perf_counter()
    threads = [threading.Thread(target=run, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    a = np.concatenate([np.asarray(x) for x in lat]) * 1000
    return {"clients": clients, "statements": int(a.size), "per_s": a.size / wall,
            "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    ds = harness.Dataset(SHARED / "data/wordnet-minilm", "cosine", args.rows)
    fmt = harness.vector_formatter(ds.base.dtype)
    rows = [(int(ds.ids[i]), ds.meta["text"][i], fmt(ds.base[i])) for i in range(ds.n)]
    out = {"label": args.label}
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        for t in ("dur_copy", "dur_ins"):
            conn.execute(f"DROP TABLE IF EXISTS {t}")
            conn.execute(CREATE.format(t=t))
        t0 = time.perf_counter()
        with conn.cursor() as cur:
            with cur.copy("COPY dur_copy (id, text, embedding) FROM STDIN") as cp:
                for r in rows:
                    cp.write_row(r)
        wall = time.perf_counter() - t0
        out["copy"] = {"rows": len(rows), "seconds": wall, "rows_per_s": len(rows) / wall}
        print(f"[{args.label}] COPY {len(rows)} rows: {len(rows) / wall:,.0f} rows/s", file=sys.stderr)
    for clients in (1, args.clients):
        r = inserts(args.dsn, "dur_ins", rows, args.seconds, clients)
        out[f"insert_{clients}"] = r
        print(f"[{args.label}] one-row INSERTs, {clients} client(s): {r['per_s']:,.0f}/s, "
              f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms", file=sys.stderr)
    Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
