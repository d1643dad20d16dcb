#!/usr/bin/env python3
"""Sharded tables over the wire (bench/shards.sh runs it against a fresh Quiver).

    python3 bench/shards.py --dsn DSN --out FILE.json [--shards 1,4,8] [--seconds 20]
        [--scale DIR --partitions 8]    # the 1M-row set of bench/scale.py instead of wordnet

1. For each shard count N: a table `docs_N` (`WITH (shards = N, shard_key = id)`; N = 1 is
   a plain table), COPY of wordnet-minilm, CREATE INDEX ivf_hnsw_sq (one partition per
   shard; with --partitions P, P partitions in all, P / N a shard), then the 1,000 queries
   (k = 10, prepared, every partition of each shard read probed, ef 64): recall@10 against
   the exact ground truth, QPS, p50 / p99, and the shards each query read (from EXPLAIN);
   also at ef 32 and 16 (each shard returns its own k nearest: more candidates than one).
   The 1-shard table is the baseline the others are a ratio of.
   Then `docs_ivf8` (`WITH (shards = 8, sharding = 'ivf')`): COPY (every row on the
   pending shard), OPTIMIZE TABLE (trains the centroids and moves the rows to their
   shards: timed, with the rows per shard), the same index, and the queries at ef 64
   with `quiver.shard_probes` 1, 2 and 4.
2. Rebalancing: `docs_4` is moved to 8 shards (ALTER TABLE … SET (shards = 8)) while one
   reader process runs the same queries: rows moved (the ALTER's NOTICE) and wall time,
   the reader's QPS before, during and after the move (the ratios are the figures), every
   answer checked to have 10 rows; then the row count and an order-independent checksum
   (count, sum of ids, sum of bucket) against those before, and the recall after;
   then OPTIMIZE TABLE (compaction of the moved rows' deletions) and the queries again.
"""
import argparse
import json
import multiprocessing as mp
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("SHARED_BENCH", HERE / "../../shared/bench")).resolve()
sys.path.insert(0, str(SHARED))
import harness  # noqa: E402

# The result cache off: the warm-up queries are repeated (bench/caches.py measures it).
SET = ["SET quiver.nprobes = 1", "SET quiver.ef = 64", "SET quiver.result_cache = off"]
# ef per search setting: each shard returns its own k nearest, so a sharded table
# reaches a given recall with a smaller ef than one table does.
EFS = [64, 32, 16]
# quiver.shard_probes of the ivf-sharded table (at ef 64).
PROBES = [1, 2, 4]
QUERY = "SELECT id FROM vector_search('{t}', 'embedding', %s::vector, 10)"
K = 10


def pct(a, q):
    return float(np.percentile(np.asarray(a), q)) * 1000.0 if len(a) else None


class ScaleData:
    """The 1M-row set of bench/scale.py (`scale.py make`): COPY text of (id, embedding),
    200 unit-norm queries and their exact cosine top 10."""

    def __init__(self, folder):
        self.folder = Path(folder)
        m = json.loads((self.folder / "MANIFEST.json").read_text())
        self.n, self.dim = m["rows"], m["dim"]
        self.queries = np.load(self.folder / "queries.npy")
        self.gt = np.load(self.folder / "gt.npy")

    def copy(self, cur, table):
        with cur.copy(f"COPY {table} (id, embedding) FROM STDIN") as cp:
            with open(self.folder / "copy.txt", "rb") as f:
                while block := f.read(8 << 20):
                    cp.write(block)


def dataset(scale):
    """The data the benchmarks search: the 1M-row set in folder `scale` when given, else
    wordnet-minilm; with its query vectors as text and the exact top 10 of each."""
    if scale:
        ds = ScaleData(scale)
        return ds, ["[" + ",".join(f"{x:.5f}" for x in q) + "]" for q in ds.queries], ds.gt
    ds = harness.Dataset(SHARED / "data/wordnet-minilm", "cosine", 0)
    fmt = harness.vector_formatter(ds.base.dtype)
    gt, _ = ds.ground_truth(None, K)
    return ds, [fmt(q) for q in ds.queries], gt


def copy_into(conn, table, ds):
    """COPYs `ds` (the 1M-row set or wordnet-minilm) into `table`."""
    with conn.cursor() as cur:
        if isinstance(ds, ScaleData):
            ds.copy(cur, table)
        else:
            with cur.copy(f"COPY {table} FROM STDIN") as cp:
                for c in harness.copy_text_chunks(ds):
                    cp.write(c)


def load(conn, table, shards, ds, ivf=False, partitions=1):
    """Creates and fills `table`; an ivf_hnsw_sq index of `partitions` partitions in all,
    split over the shards (at least 1 a shard)."""
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    with_ = f" WITH (shards = {shards}, shard_key = id)" if shards > 1 else ""
    if ivf:
        with_ = f" WITH (shards = {shards}, sharding = 'ivf')"
    conn.execute(f"CREATE TABLE {table} (id BIGINT, text TEXT, category TEXT, bucket INT, "
                 f"embedding VECTOR({ds.dim})){with_}")
    t0 = time.perf_counter()
    copy_into(conn, table, ds)
    copy_s = time.perf_counter() - t0
    per_shard = max(1, partitions // shards)
    out = {"copy_rows_per_s": ds.n / copy_s, "partitions_per_shard": per_shard}
    if ivf:
        # Trains the centroids and moves the rows off the pending shard.
        t0 = time.perf_counter()
        conn.execute(f"OPTIMIZE TABLE {table}")
        out["train_and_move_s"] = time.perf_counter() - t0
        out["rows_per_shard"] = [r[0] for r in conn.execute(
            f"SELECT rows FROM quiver_shards('{table}') ORDER BY shard").fetchall()]
    t0 = time.perf_counter()
    conn.execute(f"CREATE INDEX {table}_idx ON {table} USING ivf_hnsw_sq (embedding) "
                 f"WITH (metric='cosine', num_partitions={per_shard})")
    out["index_s"] = time.perf_counter() - t0
    return out


def shards_read(conn, table, qvec):
    plan = "\n".join(r[-1] for r in conn.execute(
        "EXPLAIN " + QUERY.format(t=table).replace("%s", f"'{qvec}'")).fetchall())
    m = re.search(r"shards=\[([^\]]*)\] of (\d+)", plan)
    return len(m.group(1).split(",")) if m else 1


def shards_per_query(conn, table, qvecs):
    """The shards the first 100 queries read, on average (EXPLAIN of each)."""
    return float(np.mean([shards_read(conn, table, v) for v in qvecs[:100]]))


def search(conn, table, qvecs, gt, nprobes=1):
    """Every partition of each shard read is probed (`nprobes` = partitions per shard)."""
    conn.execute(f"SET quiver.nprobes = {nprobes}")
    sql = QUERY.format(t=table)
    # Warm: passes of the queries until one misses the chunk cache for at most 1 % of
    # them (the tables measured before filled the cache; a table's chunks get in as
    # its searches keep asking for them), at most 10.
    warm = 0
    while True:
        m0 = chunk_misses(conn)
        for v in qvecs:
            conn.execute(sql, (v,), prepare=True).fetchall()
        warm += 1
        if chunk_misses(conn) - m0 <= len(qvecs) // 100 or warm >= 10:
            break
    lat, hits = [], 0
    t0 = time.perf_counter()
    for i, v in enumerate(qvecs):
        q0 = time.perf_counter()
        ids = [r[0] for r in conn.execute(sql, (v,), prepare=True).fetchall()]
        lat.append(time.perf_counter() - q0)
        hits += len(set(ids) & set(gt[i, :K].tolist()))
    wall = time.perf_counter() - t0
    return {"recall": hits / (K * len(qvecs)), "qps": len(qvecs) / wall,
            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "warm_passes": warm}


def chunk_misses(conn):
    return conn.execute("SELECT misses FROM quiver_caches() WHERE cache = 'chunks'").fetchone()[0]


def reader(dsn, table, qvecs, stop, out, nprobes=1):
    """Runs the queries until `stop` is set: (start, latency) of each; fails on a short answer."""
    conn = harness.connect(dsn)
    for s in SET:
        conn.execute(s)
    conn.execute(f"SET quiver.nprobes = {nprobes}")
    sql = QUERY.format(t=table)
    for v in qvecs[:50]:
        conn.execute(sql, (v,), prepare=True).fetchall()
    out.put("ready")
    marks, i = [], 0
    while not stop.is_set():
        t0 = time.time()
        rows = conn.execute(sql, (qvecs[i % len(qvecs)],), prepare=True).fetchall()
        marks.append((t0, time.time() - t0))
        if len(rows) != K:
            out.put({"error": f"query {i} returned {len(rows)} rows"})
            return
        i += 1
    out.put({"marks": marks})


def checksum(conn, table):
    return list(conn.execute(f"SELECT count(*), sum(id), sum(bucket) FROM {table}").fetchone())


def shard_table(conn, table):
    """quiver_shards(table): per shard rows, fragments, deleted and unindexed rows."""
    return [dict(zip(("rows", "fragments", "deleted_rows", "unindexed_rows"), r)) for r in conn.execute(
        f"SELECT rows, fragments, deleted_rows, unindexed_rows FROM quiver_shards('{table}') ORDER BY shard"
    ).fetchall()]


def rate(marks, lo, hi):
    n = [lat for (s, lat) in marks if s >= lo and s + lat <= hi]
    return {"queries": len(n), "qps": len(n) / (hi - lo) if hi > lo else None,
            "p50_ms": pct(n, 50), "p99_ms": pct(n, 99)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--shards", default="1,4,8")
    ap.add_argument("--ivf", type=int, default=8, help="shards of the ivf-sharded table (0: none)")
    ap.add_argument("--seconds", type=float, default=20, help="reader time before and after the move")
    ap.add_argument("--scale", help="the 1M-row set of bench/scale.py (its folder) instead of wordnet-minilm")
    ap.add_argument("--partitions", type=int, default=1,
                    help="ivf_hnsw_sq partitions of each table in all, split over its shards")
    args = ap.parse_args()
    ds, qvecs, gt = dataset(args.scale)
    conn = harness.connect(args.dsn)
    for s in SET:
        conn.execute(s)
    result = {"machine": harness.machine_info(), "rows": ds.n, "queries": len(qvecs),
              "partitions": args.partitions, "tables": {}}
    for n in [int(x) for x in args.shards.split(",")]:
        table = f"docs_{n}"
        r = load(conn, table, n, ds, partitions=args.partitions)
        r["shards_read"] = shards_read(conn, table, qvecs[0])
        r["settings"] = {}
        for ef in EFS:
            conn.execute(f"SET quiver.ef = {ef}")
            r["settings"][f"ef{ef}"] = search(conn, table, qvecs, gt, r["partitions_per_shard"])
        conn.execute("SET quiver.ef = 64")
        harness.log(f"{n} shards: {r}")
        result["tables"][n] = r
    if args.ivf:
        n = args.ivf
        table = f"docs_ivf{n}"
        r = load(conn, table, n, ds, ivf=True, partitions=args.partitions)
        r["settings"] = {}
        for probes in PROBES:
            conn.execute(f"SET quiver.shard_probes = {probes}")
            x = search(conn, table, qvecs, gt, r["partitions_per_shard"])
            x["shards_read"] = shards_per_query(conn, table, qvecs)
            r["settings"][f"probes{probes}"] = x
        conn.execute("RESET quiver.shard_probes")
        harness.log(f"{n} ivf shards: {r}")
        result["ivf"] = {"shards": n, **r}

    # Rebalancing 4 -> 8 under a reader.
    table = "docs_4"
    before = checksum(conn, table)
    ctx = mp.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    p = ctx.Process(target=reader, args=(args.dsn, table, qvecs, stop, out,
                                         result["tables"][4]["partitions_per_shard"]))
    p.start()
    assert out.get() == "ready"
    t_start = time.time()
    time.sleep(args.seconds)
    notices = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    t_alter = time.time()
    conn.execute(f"ALTER TABLE {table} SET (shards = 8)")
    t_done = time.time()
    time.sleep(args.seconds)
    stop.set()
    got = out.get()
    p.join()
    if "error" in got:
        sys.exit(f"reader: {got['error']}")
    marks = got["marks"]
    moved = next((m for m in notices if m.startswith("moved ")), None)
    m = re.match(r"moved (\d+) of (\d+) rows", moved or "")
    after = checksum(conn, table)
    reb = {
        "notice": moved,
        "rows_moved": int(m.group(1)) if m else None,
        "rows": int(m.group(2)) if m else None,
        "wall_s": t_done - t_alter,
        "reader_before": rate(marks, t_start, t_alter),
        "reader_during": rate(marks, t_alter, t_done),
        "reader_after": rate(marks, t_done, t_done + args.seconds),
        "checksum_before": before,
        "checksum_after": after,
        "shards_after": shards_read(conn, table, qvecs[0]),
        "after": search(conn, table, qvecs, gt, result["tables"][4]["partitions_per_shard"]),
    }
    reb["shards_after_move"] = shard_table(conn, table)
    # The moved rows left deletions in the old shards' fragments and indexes:
    # OPTIMIZE TABLE compacts them and folds the moved rows into the indexes.
    t0 = time.perf_counter()
    conn.execute(f"OPTIMIZE TABLE {table}")
    reb["optimize_s"] = time.perf_counter() - t0
    reb["after_optimize"] = search(conn, table, qvecs, gt, result["tables"][4]["partitions_per_shard"])
    reb["shards_after_optimize"] = shard_table(conn, table)
    # The shards the rows left keep indexes built over twice their rows now: REINDEX
    # rebuilds them from the rows they hold.
    t0 = time.perf_counter()
    conn.execute(f"REINDEX TABLE {table}")
    reb["reindex_s"] = time.perf_counter() - t0
    reb["after_reindex"] = search(conn, table, qvecs, gt, result["tables"][4]["partitions_per_shard"])
    result["tables"][8]["shards"] = shard_table(conn, "docs_8")
    reb["moved_fraction"] = reb["rows_moved"] / reb["rows"] if m else None
    harness.log(f"rebalancing: {reb}")
    result["rebalance"] = reb
    Path(args.out).write_text(json.dumps(result, indent=2))
    if before != after:
        sys.exit(f"checksum changed: {before} -> {after}")


if __name__ == "__main__":
    main()
