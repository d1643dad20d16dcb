#!/usr/bin/env python3
"""Mixed read/write: one client searching while another writes, on a loaded,
indexed table (bench/mixed.sh loads it with shared/bench/harness.py first).

    python3 bench/mixed.py --dsn DSN --system quiver|pgvector --out FILE.json \
        [--seconds 30] [--writes-per-tick 10] [--tick-ms 100] [--trace FILE.json]

Phase 1, read only: the reader runs the 1,000 wordnet queries round-robin
(prepared, k = 10) for --seconds; QPS and latency percentiles.
Phase 2, with a writer: the same reader, while a second process sends
--writes-per-tick one-row INSERT statements (each its own statement and commit,
as an application's executemany does) every --tick-ms, then times one search
right after each batch of writes (the cost of the first search after a write).

Phase 3, read only again: the same reader alone on the table as the writer
left it (its rows written after the index build), which separates what the
new rows cost a search from what sharing the machine with the writer costs.

Both processes are separate OS processes (no shared GIL); all on this machine.

--trace writes every reader query of phase 2 (start, latency) and every writer
burst (start, end of its INSERTs, end of its search), in seconds from the
phase's start, and prints where the reader's slowest 1 % fell: during a burst
or not, and by how many rows had been written.
"""
import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = Path(__import__("os").environ.get("SHARED_BENCH", HERE / "../../shared/bench")).resolve()
sys.path.insert(0, str(SHARED))
import harness  # noqa: E402

SYSTEMS = {
    # equal recall@10 in bench/RESULTS.md: pgvector ef_search 40 (0.972), Quiver ef 64 (0.978)
    "pgvector": {
        "set": ["SET hnsw.ef_search = 40"],
        "query": "SELECT id FROM docs ORDER BY embedding <=> %s::vector LIMIT 10",
    },
    "quiver": {
        "set": ["SET quiver.nprobes = 1", "SET quiver.ef = 64", "SET quiver.result_cache = off"],
        "query": "SELECT id FROM vector_search('docs', 'embedding', %s::vector, 10)",
    },
}
INSERT = "INSERT INTO docs (id, text, category, bucket, embedding) VALUES (%s, %s, %s, %s, %s::vector)"


def pct(a, q):
    return float(np.percentile(np.asarray(a), q)) * 1000.0 if len(a) else None


def reader(dsn, system, qvecs, seconds, start, out, trace=False):
    conn = harness.connect(dsn)
    for s in SYSTEMS[system]["set"]:
        conn.execute(s)
    sql = SYSTEMS[system]["query"]
    for v in qvecs[:50]:  # warm-up
        conn.execute(sql, (v,), prepare=True).fetchall()
    start.wait()
    lat, starts, i = [], [], 0
    t_begin = time.perf_counter()
    t_end = t_begin + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        rows = conn.execute(sql, (qvecs[i % len(qvecs)],), prepare=True).fetchall()
        lat.append(time.perf_counter() - t0)
        starts.append(t0 - t_begin)
        assert len(rows) == 10, f"{len(rows)} rows"
        i += 1
    r = {"queries": len(lat), "qps": len(lat) / seconds, "p50_ms": pct(lat, 50),
         "p99_ms": pct(lat, 99), "max_ms": pct(lat, 100)}
    if trace:
        r["trace"] = {"start_s": starts, "latency_s": lat}
    out.put(r)


def writer(dsn, system, rows, qvecs, seconds, per_tick, tick, start, out, trace=False):
    conn = harness.connect(dsn)
    for s in SYSTEMS[system]["set"]:
        conn.execute(s)
    sql = SYSTEMS[system]["query"]
    conn.execute(sql, (qvecs[0],), prepare=True).fetchall()
    start.wait()
    t_begin = time.perf_counter()
    t_end = t_begin + seconds
    planned = int(seconds * 1000 / tick) * per_tick
    done, write_lat, after, n, bursts = 0, [], [], 0, []
    next_tick = t_begin
    while time.perf_counter() < t_end and done < planned:
        b0 = time.perf_counter()
        for _ in range(per_tick):
            t0 = time.perf_counter()
            conn.execute(INSERT, rows[n % len(rows)], prepare=True)
            write_lat.append(time.perf_counter() - t0)
            done += 1
            n += 1
        t0 = time.perf_counter()
        conn.execute(sql, (qvecs[n % len(qvecs)],), prepare=True).fetchall()
        after.append(time.perf_counter() - t0)
        bursts.append((b0 - t_begin, t0 - t_begin, t0 + after[-1] - t_begin, done))
        next_tick += tick / 1000.0
        pause = next_tick - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    r = {"writes_planned": planned, "writes_done": done,
         "write_p50_ms": pct(write_lat, 50), "write_p99_ms": pct(write_lat, 99),
         "search_after_write_p50_ms": pct(after, 50), "search_after_write_p99_ms": pct(after, 99),
         "search_after_write_max_ms": pct(after, 100)}
    if trace:
        r["trace"] = {"bursts": bursts}
    out.put(r)


def tail_report(reads, bursts):
    """Where the slowest 1 % of phase 2's reader queries fell."""
    start = np.asarray(reads["start_s"])
    lat = np.asarray(reads["latency_s"])
    edges = np.asarray([(b[0], b[2]) for b in bursts]) if bursts else np.zeros((0, 2))
    # a query overlaps a burst when it starts before the burst ends and ends after it starts
    i = np.searchsorted(edges[:, 0], start + lat, side="left") - 1 if len(edges) else np.full(len(start), -1)
    overlap = (i >= 0) & (start < edges[np.maximum(i, 0), 1] if len(edges) else False)
    written = np.asarray([b[3] for b in bursts]) if bursts else np.zeros(0)
    rows = np.where(i >= 0, written[np.maximum(i, 0)] if len(written) else 0, 0)
    p99 = np.percentile(lat, 99)
    slow = lat >= p99
    out = {"p99_ms": p99 * 1000, "overlap_share": float(overlap.mean()),
           "slow_overlap_share": float(overlap[slow].mean()) if slow.any() else None,
           "p50_ms_overlap": pct(lat[overlap], 50), "p50_ms_clear": pct(lat[~overlap], 50),
           "p99_ms_clear": pct(lat[~overlap], 99), "p99_ms_overlap": pct(lat[overlap], 99)}
    for lo, hi in [(0, 500), (500, 1500), (1500, 2500), (2500, 10 ** 9)]:
        m = (rows >= lo) & (rows < hi) & ~overlap
        out[f"clear_p50_p99_ms_rows_{lo}"] = (pct(lat[m], 50), pct(lat[m], 99))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--system", choices=sorted(SYSTEMS), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--writes-per-tick", type=int, default=10)
    ap.add_argument("--tick-ms", type=float, default=100)
    ap.add_argument("--trace", help="write phase 2's per-query trace here (JSON)")
    args = ap.parse_args()
    ds = harness.Dataset(SHARED / "data/wordnet-minilm", "cosine", 0)
    fmt = harness.vector_formatter(ds.base.dtype)
    qvecs = [fmt(q) for q in ds.queries]
    # new rows: copies of base rows under fresh ids, so the table's content stays realistic
    first_id = int(ds.ids.max()) + 1
    cats, texts, buckets = ds.meta["category"], ds.meta["text"], ds.meta["bucket"]
    rows = [(first_id + i, texts[i], cats[i], int(buckets[i]), fmt(ds.base[i])) for i in range(5000)]
    result = {"system": args.system, "seconds": args.seconds, "writes_per_tick": args.writes_per_tick,
              "tick_ms": args.tick_ms, "machine": harness.machine_info()}
    ctx = mp.get_context("spawn")

    def read_alone():
        start, out = ctx.Barrier(1), ctx.Queue()
        p = ctx.Process(target=reader, args=(args.dsn, args.system, qvecs, args.seconds, start, out))
        p.start()
        got = out.get()
        p.join()
        return got

    # phase 1: reader alone
    result["read_only"] = read_alone()
    harness.log(f"{args.system} read-only: {result['read_only']}")

    # phase 2: reader + writer
    start, rq, wq = ctx.Barrier(2), ctx.Queue(), ctx.Queue()
    trace = bool(args.trace)
    pr = ctx.Process(target=reader, args=(args.dsn, args.system, qvecs, args.seconds, start, rq, trace))
    pw = ctx.Process(target=writer, args=(args.dsn, args.system, rows, qvecs, args.seconds,
                                          args.writes_per_tick, args.tick_ms, start, wq, trace))
    pr.start()
    pw.start()
    result["with_writer"] = rq.get()
    result["writer"] = wq.get()
    pr.join()
    pw.join()
    if trace:
        reads, bursts = result["with_writer"].pop("trace"), result["writer"].pop("trace")["bursts"]
        Path(args.trace).write_text(json.dumps({"reads": reads, "bursts": bursts}))
        result["tail"] = tail_report(reads, bursts)
        harness.log(f"{args.system} tail: {result['tail']}")
    harness.log(f"{args.system} with writer: {result['with_writer']} writer: {result['writer']}")

    # phase 3: reader alone after the writes
    result["read_after_writes"] = read_alone()
    harness.log(f"{args.system} read-only after the writes: {result['read_after_writes']}")
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
