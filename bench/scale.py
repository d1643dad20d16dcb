#!/usr/bin/env python3
"""The 1M-row scale benchmark's steps (bench/scale.sh runs them in order).

    scale.py make  --out DIR [--rows 1000000]        # data: COPY text, queries, exact ground truth
    scale.py load  --dsn DSN --data DIR --system S --pid P --out F   # COPY, index build, RSS
    scale.py query --dsn DSN --data DIR --system S --pid P --out F   # recall/QPS per setting, INSERT+search
    scale.py first --dsn DSN --data DIR --since T --out F            # time to the first answer
    scale.py evict [--pgserver] [FILE...]   # drop executables from the page cache

The rows are the wordnet-minilm vectors tiled with small noise (N(0, 0.01) per
component, re-normalised, rounded to 5 decimals; ground truth is exact over the
rounded values). `--pid` is the server's process: Quiver's one process, or
PostgreSQL's postmaster, whose children are counted too (PSS, so shared buffers
count once). Memory is sampled every 0.25 s during each step.

Each server starts with its executable files read cold (`evict` before every
start: Quiver's binary; PostgreSQL's install with pgvector): what the kernel
maps of them depends on how they got into the page cache (the same Quiver
binary, just written by the linker or a copy, had 66 MiB of code resident
after its first statements; read cold, 51 MiB), so both are measured from the
same state.
"""
import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psycopg

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("SHARED_BENCH", HERE / "../../shared/bench")).resolve()
WORDNET = SHARED / "data/wordnet-minilm"
QUERIES = 200
K = 10


# ---------------------------------------------------------------- data
def make(out: Path, rows: int):
    out.mkdir(parents=True, exist_ok=True)
    base = np.load(WORDNET / "base.npy").astype(np.float32)
    rng = np.random.default_rng(20261201)
    tiles = -(-rows // len(base))
    vecs = np.empty((rows, base.shape[1]), dtype=np.float32)
    with open(out / "copy.txt", "w") as f:
        for t in range(tiles):
            lo, hi = t * len(base), min(rows, (t + 1) * len(base))
            v = base[: hi - lo].astype(np.float64) + rng.normal(0, 0.01, (hi - lo, base.shape[1]))
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            # rounded as doubles, so the text is short and parses to exactly `vecs`
            v = np.round(v, 5)
            vecs[lo:hi] = v
            for c in range(0, hi - lo, 10_000):
                chunk = v[c: c + 10_000].tolist()
                f.write("".join(f"{lo + c + i}\t{x}\n" for i, x in enumerate(chunk)))
    q = np.load(WORDNET / "queries.npy").astype(np.float32)[:QUERIES]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    # exact cosine top-k: the base is unit-norm up to rounding, so normalise it again
    norms = np.linalg.norm(vecs, axis=1)
    best_d = np.full((len(q), K), np.inf, dtype=np.float32)
    best_i = np.zeros((len(q), K), dtype=np.int64)
    for lo in range(0, rows, 100_000):
        d = 1 - (q @ vecs[lo: lo + 100_000].T) / norms[lo: lo + 100_000]
        idx = np.argpartition(d, K, axis=1)[:, :K]
        cd = np.take_along_axis(d, idx, axis=1)
        all_d = np.concatenate([best_d, cd], axis=1)
        all_i = np.concatenate([best_i, idx + lo], axis=1)
        o = np.argsort(all_d, axis=1, kind="stable")[:, :K]
        best_d, best_i = np.take_along_axis(all_d, o, axis=1), np.take_along_axis(all_i, o, axis=1)
    np.save(out / "queries.npy", q)
    np.save(out / "gt.npy", best_i)
    (out / "MANIFEST.json").write_text(json.dumps({"rows": rows, "dim": int(vecs.shape[1]),
                                                   "queries": len(q), "k": K}))


# ---------------------------------------------------------------- memory
def tree(pid: int) -> list[int]:
    kids = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                ppid = int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(p))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def pss_mib(pid: int) -> float:
    total = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class Sampler:
    """Peak memory of the server's processes while a step runs."""

    def __init__(self, pid: int):
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, pss_mib(self.pid))
            self.stop.wait(0.25)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *a):
        self.stop.set()
        self.t.join()
        self.peak = max(self.peak, pss_mib(self.pid))


# ---------------------------------------------------------------- steps
def vec_text(v) -> str:
    return "[" + ",".join(f"{x:.5f}" for x in v) + "]"


SQL = {
    "quiver": {
        "create": "CREATE TABLE docs (id BIGINT, embedding VECTOR({dim}))",
        "index": ["CREATE INDEX docs_idx ON docs USING ivf_hnsw_sq (embedding) "
                  "WITH (metric = 'cosine', num_partitions = {partitions})"],
        "query": "SELECT id FROM vector_search('docs', 'embedding', %s::vector, 10)",
        "settings": {f"nprobes{p}-ef{e}": [f"SET quiver.nprobes = {p}", f"SET quiver.ef = {e}",
                                                    "SET quiver.result_cache = off"]
                     for p in (1, 2, 4) for e in (40, 100)},
    },
    "pgvector": {
        "create": "CREATE TABLE docs (id bigint, embedding vector({dim}))",
        "index": ["SET maintenance_work_mem = '8GB'", "SET max_parallel_maintenance_workers = 1",
                  "CREATE INDEX docs_idx ON docs USING hnsw (embedding vector_cosine_ops) "
                  "WITH (m = 16, ef_construction = 64)"],
        "query": "SELECT id FROM docs ORDER BY embedding <=> %s::vector LIMIT 10",
        "settings": {f"ef{e}": [f"SET hnsw.ef_search = {e}"] for e in (40, 100)},
    },
}


def load(args):
    m = json.loads((args.data / "MANIFEST.json").read_text())
    sql = SQL[args.system]
    out = {"system": args.system, "rows": m["rows"]}
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        if args.system == "pgvector":
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("DROP TABLE IF EXISTS docs")
        conn.execute(sql["create"].format(dim=m["dim"]))
        with Sampler(args.pid) as s:
            t0 = time.perf_counter()
            with conn.cursor() as cur, cur.copy("COPY docs (id, embedding) FROM STDIN") as cp:
                with open(args.data / "copy.txt", "rb") as f:
                    while block := f.read(8 << 20):
                        cp.write(block)
            copy_s = time.perf_counter() - t0
        out["copy"] = {"seconds": copy_s, "rows_per_s": m["rows"] / copy_s, "peak_mib": s.peak}
        print(f"[{args.system}] COPY {m['rows']:,} rows: {m['rows'] / copy_s:,.0f} rows/s, "
              f"peak {s.peak:,.0f} MiB", file=sys.stderr)
        with Sampler(args.pid) as s:
            t0 = time.perf_counter()
            for stmt in sql["index"]:
                conn.execute(stmt.format(partitions=args.partitions))
            index_s = time.perf_counter() - t0
        out["index"] = {"seconds": index_s, "peak_mib": s.peak, "partitions": args.partitions}
        print(f"[{args.system}] index build {index_s:.1f} s, peak {s.peak:,.0f} MiB", file=sys.stderr)
    Path(args.out).write_text(json.dumps(out, indent=2))


def query(args):
    sql = SQL[args.system]
    q = np.load(args.data / "queries.npy")
    gt = np.load(args.data / "gt.npy")
    qtext = [vec_text(v) for v in q]
    out = {"system": args.system, "label": args.label, "settings": {}}
    with psycopg.connect(args.dsn, autocommit=True) as conn, Sampler(args.pid) as s:
        for name, stmts in sql["settings"].items():
            for st in stmts:
                conn.execute(st)
            for t in qtext[:20]:  # warm the plan cache
                conn.execute(sql["query"], (t,), prepare=True).fetchall()
            lat, hits = [], 0
            for i, t in enumerate(qtext):
                t0 = time.perf_counter()
                got = [r[0] for r in conn.execute(sql["query"], (t,), prepare=True).fetchall()]
                lat.append(time.perf_counter() - t0)
                hits += len(set(got) & set(gt[i].tolist()))
            a = np.asarray(lat) * 1000
            r = {"recall": hits / (len(qtext) * K), "qps": len(a) / (a.sum() / 1000),
                 "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99))}
            out["settings"][name] = r
            print(f"[{args.system} {args.label}] {name}: recall {r['recall']:.3f}, {r['qps']:,.0f} QPS, "
                  f"p99 {r['p99_ms']:.2f} ms", file=sys.stderr)
        if args.inserts:
            first = list(sql["settings"].values())[0]
            for st in first:
                conn.execute(st)
            ins, after, missed = [], [], 0
            # ids above the table's, so an earlier step's inserted rows are not repeated
            base = conn.execute("SELECT max(id) FROM docs").fetchone()[0] + 1
            for i in range(args.inserts):
                t0 = time.perf_counter()
                conn.execute("INSERT INTO docs (id, embedding) VALUES (%s, %s::vector)",
                             (base + i, qtext[i]), prepare=True)
                t1 = time.perf_counter()
                got = [r[0] for r in conn.execute(sql["query"], (qtext[i],), prepare=True).fetchall()]
                after.append(time.perf_counter() - t1)
                ins.append(t1 - t0)
                # The row is the query's own vector: an exact search finds it
                # first; an approximate one may miss it (pgvector's HNSW at
                # ef_search 40 did once), which is counted, not fatal.
                missed += base + i not in got
            out["insert_then_search"] = {
                "missed": missed,
                "insert_p50_ms": float(np.percentile(ins, 50) * 1000),
                "search_after_p50_ms": float(np.percentile(after, 50) * 1000),
                "search_after_max_ms": float(np.max(after) * 1000)}
            print(f"[{args.system} {args.label}] search right after a one-row INSERT: "
                  f"p50 {out['insert_then_search']['search_after_p50_ms']:.2f} ms, "
                  f"max {out['insert_then_search']['search_after_max_ms']:.2f} ms, "
                  f"{missed} of {args.inserts} rows missed", file=sys.stderr)
    out["peak_mib"] = s.peak
    print(f"[{args.system} {args.label}] memory during queries: peak {s.peak:,.0f} MiB", file=sys.stderr)
    Path(args.out).write_text(json.dumps(out, indent=2))


def first(args):
    """Connects as soon as the server accepts and times the first search's answer."""
    sql = SQL[args.system]
    q = vec_text(np.load(args.data / "queries.npy")[0])
    while True:
        try:
            with psycopg.connect(args.dsn, autocommit=True, connect_timeout=2) as conn:
                conn.execute(sql["query"], (q,)).fetchall()
                break
        except psycopg.OperationalError:
            time.sleep(0.05)
    s = time.time() - args.since
    print(f"[{args.system}] first answer {s:.2f} s after the start", file=sys.stderr)
    Path(args.out).write_text(json.dumps({"first_answer_s": s}))


def evict(args):
    """Drops the files' clean pages from the page cache (files mapped by a
    running process keep theirs)."""
    files = [Path(f) for f in args.files]
    if args.pgserver:
        import pgserver
        root = Path(pgserver.__file__).resolve().parent / "pginstall"
        files += [p for p in root.rglob("*") if p.is_file()]
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=["make", "load", "query", "first", "evict"])
    ap.add_argument("files", nargs="*")
    ap.add_argument("--pgserver", action="store_true")
    ap.add_argument("--out")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--data", type=Path)
    ap.add_argument("--dsn")
    ap.add_argument("--system", choices=list(SQL))
    ap.add_argument("--pid", type=int)
    ap.add_argument("--label", default="")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--inserts", type=int, default=0)
    ap.add_argument("--since", type=float)
    args = ap.parse_args()
    if args.step == "evict":
        evict(args)
    elif args.out is None:
        ap.error("--out is required")
    elif args.step == "make":
        make(Path(args.out), args.rows)
    else:
        {"load": load, "query": query, "first": first}[args.step](args)


if __name__ == "__main__":
    main()
