#!/usr/bin/env python3
"""The result cache over the wire (bench/caches.sh runs it against a fresh Quiver).

    python3 bench/caches.py --dsn DSN --out FILE.json [--scale DIR --partitions 8]

wordnet-minilm in a table `docs` (COPY, then CREATE INDEX ivf_hnsw_sq, nprobes 1, ef 64),
or with --scale the 1M-row set of bench/scale.py (an index of --partitions partitions,
all of them probed, ef 64); its queries (1,000 or 200), k = 10, one client, prepared (the
vector as a text parameter), in the `vector_search` form and the pgvector
`ORDER BY … LIMIT` form:

1. baseline: the result cache off (`SET quiver.result_cache = off`), every query run;
2. misses: the cache on, each query asked for the first time (run, then kept);
3. hits: the same 1,000 queries again, each answered from the cache;
4. one query repeated 1,000 times (hits);
5. after a one-row INSERT, the next ask of a cached query (a miss: the write made the
   entry unreachable) and the one after it (a hit again), and one more after the row
   was flushed from the log into Lance (a hit: a flush changes no row); every answer is
   checked against the one of the baseline run, and the cache's counters
   (quiver_caches()) against the number of queries asked.

6. the protocol's floor: `SHOW quiver.ef` prepared, 1,000 times (no planning, no table).

The ratios are against the baseline of the same run; the target of the issue is
hit p50 <= 0.3 ms and >= 5x faster than a miss.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("SHARED_BENCH", HERE / "../../shared/bench")).resolve()
sys.path.insert(0, str(SHARED))
import harness  # noqa: E402
from shards import copy_into, dataset  # noqa: E402

K = 10
FORMS = {
    "vector_search": "SELECT id FROM vector_search('docs', 'embedding', %s::vector, 10)",
    "orderby": "SELECT id FROM docs ORDER BY embedding <=> %s::vector LIMIT 10",
}


def pct(a, q):
    return float(np.percentile(np.asarray(a), q)) * 1000.0


def timed(conn, sql, vecs):
    lat, answers = [], []
    t0 = time.perf_counter()
    for v in vecs:
        q0 = time.perf_counter()
        answers.append([r[0] for r in conn.execute(sql, (v,), prepare=True).fetchall()])
        lat.append(time.perf_counter() - q0)
    wall = time.perf_counter() - t0
    return {"queries": len(vecs), "qps": len(vecs) / wall, "p50_ms": pct(lat, 50),
            "p99_ms": pct(lat, 99)}, answers


def results_counters(conn):
    r = conn.execute("SELECT hits, misses, entries, bytes FROM quiver_caches() "
                     "WHERE cache = 'results'").fetchone()
    return {"hits": r[0], "misses": r[1], "entries": r[2], "bytes": r[3]}


def fragments(conn):
    return conn.execute("SELECT sum(fragments) FROM quiver_shards('docs')").fetchone()[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--scale", help="the 1M-row set of bench/scale.py (its folder) instead of wordnet-minilm")
    ap.add_argument("--partitions", type=int, default=8, help="index partitions with --scale")
    args = ap.parse_args()
    ds, qvecs, gt = dataset(args.scale)
    partitions = args.partitions if args.scale else 1
    conn = harness.connect(args.dsn)
    conn.execute("DROP TABLE IF EXISTS docs")
    conn.execute(f"CREATE TABLE docs (id BIGINT, text TEXT, category TEXT, bucket INT, "
                 f"embedding VECTOR({ds.dim}))")
    copy_into(conn, "docs", ds)
    conn.execute("CREATE INDEX docs_idx ON docs USING ivf_hnsw_sq (embedding) "
                 f"WITH (metric='cosine', num_partitions={partitions})")
    conn.execute(f"SET quiver.nprobes = {partitions}")
    conn.execute("SET quiver.ef = 64")
    out = {"rows": ds.n, "queries": len(qvecs), "partitions": partitions, "forms": {}}
    for form, sql in FORMS.items():
        conn.execute("SET quiver.result_cache = off")
        timed(conn, sql, qvecs)  # warm the engine's caches
        base, base_answers = timed(conn, sql, qvecs)
        recall = sum(len(set(a) & set(gt[i, :K].tolist())) for i, a in enumerate(base_answers)) / (K * len(qvecs))
        conn.execute("SET quiver.result_cache = on")
        c0 = results_counters(conn)
        miss, miss_answers = timed(conn, sql, qvecs)
        c1 = results_counters(conn)
        hit, hit_answers = timed(conn, sql, qvecs)
        c2 = results_counters(conn)
        one, one_answers = timed(conn, sql, [qvecs[0]] * len(qvecs))
        c3 = results_counters(conn)
        if miss_answers != base_answers or hit_answers != base_answers or any(a != base_answers[0] for a in one_answers):
            sys.exit(f"{form}: an answer from the cache differs from the one computed")
        if c1["misses"] - c0["misses"] != len(qvecs) or c1["hits"] != c0["hits"]:
            sys.exit(f"{form}: expected {len(qvecs)} misses: {c0} -> {c1}")
        if c2["hits"] - c1["hits"] != len(qvecs) or c3["hits"] - c2["hits"] != len(qvecs):
            sys.exit(f"{form}: expected hits: {c1} -> {c2} -> {c3}")
        out["forms"][form] = {"recall": recall, "baseline": base, "miss": miss, "hit": hit,
                              "one_query": one}
        harness.log(f"{form}: {out['forms'][form]}")
    # Last: a write makes the table's entries unreachable at once; the flush of
    # the row it logged into Lance (a new Lance version, the same rows) does not.
    for n, (form, sql) in enumerate(FORMS.items()):
        c3 = results_counters(conn)
        frags = fragments(conn)
        conn.execute("INSERT INTO docs (id, text, category, bucket, embedding) VALUES "
                     "(%s, 'x', 'x', 0, %s::vector)", (10_000_000 + n, qvecs[0]))
        t0 = time.perf_counter()
        after = [r[0] for r in conn.execute(sql, (qvecs[0],), prepare=True).fetchall()]
        after_ms = (time.perf_counter() - t0) * 1000
        c4 = results_counters(conn)
        again = [r[0] for r in conn.execute(sql, (qvecs[0],), prepare=True).fetchall()]
        c5 = results_counters(conn)
        if after[0] < 10_000_000 or again != after:
            sys.exit(f"{form}: the row written is not the nearest after the write: {after}")
        if c4["misses"] != c3["misses"] + 1 or c5["hits"] != c4["hits"] + 1:
            sys.exit(f"{form}: expected a miss then a hit after the write: {c3} -> {c4} -> {c5}")
        # Past the log's flush interval (1 s by default) the row is in Lance.
        time.sleep(3)
        if fragments(conn) <= frags:
            sys.exit(f"{form}: the row was not flushed into a new fragment within 3 s")
        flushed = [r[0] for r in conn.execute(sql, (qvecs[0],), prepare=True).fetchall()]
        c6 = results_counters(conn)
        if flushed != after or c6["hits"] != c5["hits"] + 1 or c6["misses"] != c5["misses"]:
            sys.exit(f"{form}: expected a hit after the flush: {c5} -> {c6}")
        out["forms"][form].update({"after_write_ms": after_ms, "counters": c6})
    # The protocol's floor: a prepared statement answered without planning
    # or reading a table (the client, the wire, parse/bind/execute).
    lat = []
    for _ in range(1000):
        q0 = time.perf_counter()
        conn.execute("SHOW quiver.ef", prepare=True).fetchall()
        lat.append(time.perf_counter() - q0)
    out["floor"] = {"p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}
    out["caches"] = [list(r) for r in conn.execute(
        "SELECT cache, hits, misses, entries, bytes, capacity FROM quiver_caches()").fetchall()]
    Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
