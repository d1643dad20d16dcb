#!/usr/bin/env python3
"""Trickle writes vs one COPY: the same rows loaded by --rows one-row INSERT
statements and by one COPY, both indexed alike, then OPTIMIZE TABLE
(compaction + cleanup; run the server with [storage] version_retention = "0").
Reports INSERT statements/s, bytes on disk of each table, and search latency
on each (prepared, k = 10, wordnet queries).

    python3 bench/trickle.py --dsn DSN --data-dir DIR [--rows 10000] --out FILE.json
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = Path(__import__("os").environ.get("SHARED_BENCH", HERE / "../../shared/bench")).resolve()
sys.path.insert(0, str(SHARED))
import harness  # noqa: E402

CREATE = "CREATE TABLE {t} (id BIGINT, text TEXT, category TEXT, bucket INT, embedding VECTOR(384))"
INDEX = ("CREATE INDEX {t}_idx ON {t} USING ivf_hnsw_sq (embedding) "
         "WITH (metric = 'cosine', num_partitions = 1)")
QUERY = "SELECT id FROM vector_search('{t}', 'embedding', %s::vector, 10)"


def table_bytes(data_dir: Path, t: str) -> int:
    dirs = list((data_dir / "tables").glob(f"{t}-*.lance"))
    assert len(dirs) == 1, dirs
    return sum(f.stat().st_size for f in dirs[0].rglob("*") if f.is_file())


def search_latency(conn, t, qvecs):
    sql = QUERY.format(t=t)
    for v in qvecs[:50]:
        conn.execute(sql, (v,), prepare=True).fetchall()
    lat = []
    for v in qvecs:
        t0 = time.perf_counter()
        conn.execute(sql, (v,), prepare=True).fetchall()
        lat.append(time.perf_counter() - t0)
    a = np.asarray(lat) * 1000
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "qps": len(a) / (a.sum() / 1000)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--data-dir", required=True, type=Path)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    ds = harness.Dataset(SHARED / "data/wordnet-minilm", "cosine", args.rows)
    fmt = harness.vector_formatter(ds.base.dtype)
    rows = [(int(ds.ids[i]), ds.meta["text"][i], ds.meta["category"][i], int(ds.meta["bucket"][i]),
             fmt(ds.base[i])) for i in range(ds.n)]
    qvecs = [fmt(q) for q in ds.queries[:500]]
    conn = harness.connect(args.dsn)
    for t in ("bulk", "trickle"):
        conn.execute(f"DROP TABLE IF EXISTS {t}")
        conn.execute(CREATE.format(t=t))
    res = {"rows": ds.n, "machine": harness.machine_info()}
    t0 = time.perf_counter()
    with conn.cursor().copy("COPY bulk FROM STDIN") as cp:
        for r in rows:
            cp.write_row(r)
    res["copy_s"] = time.perf_counter() - t0
    ins = "INSERT INTO trickle VALUES (%s, %s, %s, %s, %s::vector)"
    t0 = time.perf_counter()
    for r in rows:
        conn.execute(ins, r, prepare=True)
    res["insert_s"] = time.perf_counter() - t0
    res["inserts_per_s"] = ds.n / res["insert_s"]
    harness.log(f"{ds.n} one-row INSERTs in {res['insert_s']:.1f} s ({res['inserts_per_s']:.0f}/s)")
    res["bytes_before_optimize"] = {t: table_bytes(args.data_dir, t) for t in ("bulk", "trickle")}
    for t in ("bulk", "trickle"):
        t0 = time.perf_counter()
        conn.execute(INDEX.format(t=t))
        res[f"index_s_{t}"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        conn.execute(f"OPTIMIZE TABLE {t}")
        res[f"optimize_s_{t}"] = time.perf_counter() - t0
    conn.execute("SET quiver.nprobes = 1")
    conn.execute("SET quiver.ef = 64")
    conn.execute("SET quiver.result_cache = off")
    res["bytes"] = {t: table_bytes(args.data_dir, t) for t in ("bulk", "trickle")}
    res["bytes_ratio"] = res["bytes"]["trickle"] / res["bytes"]["bulk"]
    for t in ("bulk", "trickle"):  # a first pass warms both tables' caches
        search_latency(conn, t, qvecs)
    res["search"] = {t: search_latency(conn, t, qvecs) for t in ("bulk", "trickle")}
    res["latency_ratio"] = res["search"]["trickle"]["mean_ms"] / res["search"]["bulk"]["mean_ms"]
    harness.log(json.dumps({k: res[k] for k in ("bytes", "bytes_ratio", "latency_ratio")}))
    Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
