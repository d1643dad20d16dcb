#!/usr/bin/env python3
"""Hot vs cold tables over the wire (bench/tiers.sh runs it, one phase per Quiver process).

    python3 bench/tiers.py --dsn DSN --phase load|empty|kept --out FILE.json [--scale DIR --partitions 8]

With --scale: the 1M-row set of bench/scale.py (its 200 queries) instead of wordnet-minilm,
its index of --partitions partitions, all of them probed.

load:  wordnet-minilm into `docs_hot` (local disk) and `docs_cold` (the S3 cold tier),
       COPY and CREATE INDEX ivf_hnsw_sq on each, timed; and a third copy moved hot ->
       cold with ALTER TABLE … SET (tier = 'cold'), timed, then dropped.
empty: (a new process, the SSD cache folder emptied) the 1,000 queries on the hot table,
       then on the cold table: the first pass reads what the memory caches do not hold
       from disk / the object store; then passes until one reads from the SSD cache
       fewer blocks than 1 % of its queries (at most 10; the hot table's second pass),
       the last of them the warm one. The cold table's chunks compete for the chunk
       cache with the hot table's, read first.
kept:  (a new process, the SSD cache kept, memory caches empty) the cold table the same way.

Every pass: QPS, p50, p99, recall@10 against the exact ground truth, and the SSD cache's
hits, misses and store GETs during it (quiver_caches()). The result cache is off.
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
SQL = "SELECT id FROM {t} ORDER BY embedding <=> %s::vector LIMIT 10"


def pct(a, q):
    return float(np.percentile(np.asarray(a), q)) * 1000.0


def ssd(conn):
    r = conn.execute("SELECT hits, misses, store_gets FROM quiver_caches() WHERE cache = 'ssd'").fetchone()
    return {"hits": r[0], "misses": r[1], "store_gets": r[2]}


def timed(conn, table, vecs, gt):
    before = ssd(conn)
    lat, answers = [], []
    sql = SQL.format(t=table)
    t0 = time.perf_counter()
    for v in vecs:
        q0 = time.perf_counter()
        answers.append([r[0] for r in conn.execute(sql, (v,), prepare=True).fetchall()])
        lat.append(time.perf_counter() - q0)
    wall = time.perf_counter() - t0
    after = ssd(conn)
    recall = sum(len(set(a) & set(gt[i, :K].tolist())) for i, a in enumerate(answers)) / (K * len(vecs))
    return {"queries": len(vecs), "qps": len(vecs) / wall, "p50_ms": pct(lat, 50),
            "p99_ms": pct(lat, 99), "recall": recall,
            "ssd": {k: after[k] - before[k] for k in after}}


def load(conn, ds, partitions):
    out = {"rows": ds.n, "copy_s": {}, "index_s": {}}
    for table, tier in [("docs_hot", "hot"), ("docs_cold", "cold"), ("docs_moved", "hot")]:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (id BIGINT, text TEXT, category TEXT, bucket INT, "
                     f"embedding VECTOR({ds.dim})) WITH (tier = '{tier}')")
        t0 = time.perf_counter()
        copy_into(conn, table, ds)
        copy_s = time.perf_counter() - t0
        if table == "docs_moved":
            t0 = time.perf_counter()
            conn.execute("ALTER TABLE docs_moved SET (tier = 'cold')")
            out["move_s"] = time.perf_counter() - t0
            n = conn.execute("SELECT count(*) FROM docs_moved").fetchone()[0]
            if n != ds.n:
                sys.exit(f"the moved table has {n} rows, not {ds.n}")
            conn.execute("DROP TABLE docs_moved")
            continue
        out["copy_s"][tier] = copy_s
        t0 = time.perf_counter()
        conn.execute(f"CREATE INDEX {table}_idx ON {table} USING ivf_hnsw_sq (embedding) "
                     f"WITH (metric='cosine', num_partitions={partitions})")
        out["index_s"][tier] = time.perf_counter() - t0
        conn.execute(f"OPTIMIZE TABLE {table}")
    harness.log(f"load: {out}")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--phase", choices=["load", "empty", "kept"], required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--scale", help="the 1M-row set of bench/scale.py (its folder) instead of wordnet-minilm")
    ap.add_argument("--partitions", type=int, default=8, help="index partitions with --scale")
    args = ap.parse_args()
    ds, qvecs, gt = dataset(args.scale)
    partitions = args.partitions if args.scale else 1
    conn = harness.connect(args.dsn)
    out = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    out.update({"queries": len(qvecs), "partitions": partitions})
    if args.phase == "load":
        out["load"] = load(conn, ds, partitions)
    else:
        conn.execute("SET quiver.result_cache = off")
        conn.execute(f"SET quiver.nprobes = {partitions}")
        conn.execute("SET quiver.ef = 64")
        tables = [("hot", "docs_hot"), ("cold", "docs_cold")] if args.phase == "empty" else [("cold", "docs_cold")]
        r = {}
        for name, table in tables:
            r[f"{name}_first"] = timed(conn, table, qvecs, gt)
            for passes in range(1, 11):
                warm = timed(conn, table, qvecs, gt)
                if warm["ssd"]["hits"] + warm["ssd"]["misses"] <= len(qvecs) // 100:
                    break
            warm["passes"] = passes
            r[f"{name}_warm"] = warm
            harness.log(f"{args.phase} {name}: first {r[f'{name}_first']}, warm {r[f'{name}_warm']}")
        out[args.phase] = r
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
