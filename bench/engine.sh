#!/usr/bin/env bash
# The storage engine's benchmark ("Engine at scale"), in one run:
# 1. mixed read/write, Quiver vs pgvector (bench/mixed.py): wordnet-minilm loaded and
#    HNSW-indexed by shared/bench/harness.py, then one client searching (prepared, k=10)
#    for SECONDS alone, again while a second client sends 10 one-row INSERTs every
#    100 ms (a per-query trace of it in OUT_DIR), and alone once more on the table the
#    writer left; a markdown table with the ratios;
# 2. trickle writes vs one COPY on Quiver (bench/trickle.py): TRICKLE_ROWS one-row
#    INSERTs vs the same rows by COPY, both indexed, OPTIMIZE TABLE with
#    version_retention = "0", bytes on disk and search latency of each;
# 3. durable writes (bench/durable.py): one COPY of DURABLE_ROWS rows, one-row INSERTs
#    from 1 and from 8 clients, on pgvector (fsync on, synchronous_commit on), on Quiver
#    (its default [storage] fsync = true) and on Quiver with fsync = false.
#
#   bench/engine.sh                         # both systems, 30 s phases
#   SECONDS_PER_PHASE=5 TRICKLE_ROWS=1000 bench/engine.sh     # quick check
#
# pgvector: pgserver's PostgreSQL 16 + pgvector 0.6.2 (shared_buffers=2GB, jit=off).
# Quiver: the release build here (QUIVER_BIN to use another), CACHE_MEMORY (default 2GiB).
set -euo pipefail
{
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
export SHARED_BENCH=$(cd "${SHARED_BENCH:-$here/../../shared/bench}" && pwd)
PYTHON=${PYTHON:-python3}
SECONDS_PER_PHASE=${SECONDS_PER_PHASE:-30}
QUIVER_PORT=${QUIVER_PORT:-5433}
TRICKLE_ROWS=${TRICKLE_ROWS:-10000}
DURABLE_ROWS=${DURABLE_ROWS:-50000}
DURABLE_SECONDS=${DURABLE_SECONDS:-10}
CACHE_MEMORY=${CACHE_MEMORY:-2GiB}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/quiver-target}
OUT_DIR=${OUT_DIR:-/tmp/quiver-mixed-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT_DIR"
tmp=$(mktemp -d /tmp/quiver-mixed-tmp.XXXXXX)
log() { echo "[mixed $(date +%H:%M:%S)] $*" >&2; }
. "$here/lib.sh"
"$PYTHON" -c "import psycopg, numpy, pyarrow, pgserver" 2>/dev/null ||
  "$PYTHON" -m pip install -q -r "$SHARED_BENCH/requirements.txt" pgserver
durable() {   # durable DSN LABEL
  "$PYTHON" "$here/durable.py" --dsn "$1" --label "$2" --rows "$DURABLE_ROWS" --seconds "$DURABLE_SECONDS" \
    --out "$OUT_DIR/$2-durable.json"
}
harness() {
  "$PYTHON" "$SHARED_BENCH/harness.py" --data "$SHARED_BENCH/data/wordnet-minilm" --metric cosine --queries 200 "$@"
}

# ------------------------------------------------------------------ pgvector
pg_dir=$tmp/pgdata
log "pgvector: start (pgserver), load, HNSW m=16 ef_construction=64"
dsn=$("$PYTHON" "$here/pgserver_ctl.py" tune "$pg_dir")
harness --dsn "$dsn" --dialect "$SHARED_BENCH/dialects/pgvector06.toml" --index hnsw --filter none \
  --settings ef40 --label pgvector --out "$OUT_DIR/pgvector-load.json"
"$PYTHON" "$here/mixed.py" --dsn "$dsn" --system pgvector --seconds "$SECONDS_PER_PHASE" --out "$OUT_DIR/pgvector-mixed.json" --trace "$OUT_DIR/pgvector-trace.json"
durable "$dsn" pgvector
"$PYTHON" "$here/pgserver_ctl.py" stop "$pg_dir"
pg_dir=""

# ------------------------------------------------------------------ Quiver
quiver_bin
log "quiver: start ($bin, cache $CACHE_MEMORY), load, IVF_HNSW_SQ"
serve_quiver "$tmp/quiver-data" "$OUT_DIR/quiver.log" --cache-memory "$CACHE_MEMORY"
wait_ready "$qdsn"
harness --dsn "$qdsn" --dialect "$here/quiver.toml" --index ivf_hnsw_sq --filter none \
  --settings nprobes1-ef64 --label quiver --out "$OUT_DIR/quiver-load.json"
"$PYTHON" "$here/mixed.py" --dsn "$qdsn" --system quiver --seconds "$SECONDS_PER_PHASE" --out "$OUT_DIR/quiver-mixed.json" --trace "$OUT_DIR/quiver-trace.json"
durable "$qdsn" quiver

# ------------------------------------------------------------------ table
"$PYTHON" - "$OUT_DIR" <<'EOF'
import json, sys, pathlib
d = pathlib.Path(sys.argv[1])
p = json.loads((d / "pgvector-mixed.json").read_text())
q = json.loads((d / "quiver-mixed.json").read_text())
def row(name, f, fmt="{:,.1f}"):
    a, b = f(p), f(q)
    r = f"{b / a:.2f}x" if a and b else "-"
    print(f"| {name} | {fmt.format(a)} | {fmt.format(b)} | {r} |")
print(f"Mixed read/write, {q['seconds']:.0f} s per phase, writer: {q['writes_per_tick']} one-row INSERTs every {q['tick_ms']:.0f} ms\n")
print("| measure | pgvector | Quiver | Quiver/pgvector |\n|---|---|---|---|")
row("reader QPS, alone", lambda r: r["read_only"]["qps"])
row("reader p99 ms, alone", lambda r: r["read_only"]["p99_ms"], "{:.2f}")
row("reader QPS, with writer", lambda r: r["with_writer"]["qps"])
row("reader p99 ms, with writer", lambda r: r["with_writer"]["p99_ms"], "{:.2f}")
row("reader p99 with / without writer", lambda r: r["with_writer"]["p99_ms"] / r["read_only"]["p99_ms"], "{:.2f}")
row("reader p99 ms, with writer, clear of its bursts", lambda r: r["tail"]["p99_ms_clear"], "{:.2f}")
row("reader p99 ms, with writer, during its bursts", lambda r: r["tail"]["p99_ms_overlap"], "{:.2f}")
row("share of the slowest 1 % during writer bursts", lambda r: r["tail"]["slow_overlap_share"], "{:.2f}")
row("reader QPS, alone after the writes", lambda r: r["read_after_writes"]["qps"])
row("reader p99 ms, alone after the writes", lambda r: r["read_after_writes"]["p99_ms"], "{:.2f}")
row("writes done (of planned)", lambda r: r["writer"]["writes_done"], "{:,}")
row("one-row INSERT p50 ms", lambda r: r["writer"]["write_p50_ms"], "{:.2f}")
row("search right after writes p50 ms", lambda r: r["writer"]["search_after_write_p50_ms"], "{:.2f}")
row("search right after writes p99 ms", lambda r: r["writer"]["search_after_write_p99_ms"], "{:.2f}")
print(f"\nwrites planned per system: {q['writer']['writes_planned']:,}")
EOF
stop_quiver

# ------------------------------------------------------------------ trickle writes vs COPY
printf '[storage]\nversion_retention = "0"\n' > "$tmp/trickle.toml"
serve_quiver "$tmp/trickle-data" "$OUT_DIR/quiver-trickle.log" --config "$tmp/trickle.toml"
wait_ready "$qdsn"
log "quiver: $TRICKLE_ROWS one-row INSERTs vs one COPY"
"$PYTHON" "$here/trickle.py" --dsn "$qdsn" --data-dir "$tmp/trickle-data" --rows "$TRICKLE_ROWS" --out "$OUT_DIR/quiver-trickle.json"
"$PYTHON" - "$OUT_DIR/quiver-trickle.json" <<'EOF2'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"\nTrickle writes vs one COPY ({r['rows']:,} rows, both IVF_HNSW_SQ-indexed, after OPTIMIZE TABLE, retention 0)\n")
print("| measure | one COPY | one-row INSERTs | ratio |\n|---|---|---|---|")
b, t = r["bytes"]["bulk"], r["bytes"]["trickle"]
print(f"| bytes on disk | {b:,} | {t:,} | {t / b:.2f}x |")
sb, st = r["search"]["bulk"], r["search"]["trickle"]
print(f"| search mean ms | {sb['mean_ms']:.3f} | {st['mean_ms']:.3f} | {st['mean_ms'] / sb['mean_ms']:.2f}x |")
print(f"| search p99 ms | {sb['p99_ms']:.3f} | {st['p99_ms']:.3f} | {st['p99_ms'] / sb['p99_ms']:.2f}x |")
print(f"| load s | {r['copy_s']:.2f} | {r['insert_s']:.2f} ({r['inserts_per_s']:.0f} INSERTs/s) | |")
EOF2
stop_quiver

# ------------------------------------------------------------------ durability's cost
printf '[storage]\nfsync = false\n' > "$tmp/nofsync.toml"
serve_quiver "$tmp/nofsync-data" "$OUT_DIR/quiver-nofsync.log" --config "$tmp/nofsync.toml"
wait_ready "$qdsn"
durable "$qdsn" quiver-nofsync
"$PYTHON" - "$OUT_DIR" <<'EOF3'
import json, sys, pathlib
d = pathlib.Path(sys.argv[1])
runs = [json.loads((d / f"{n}-durable.json").read_text()) for n in ("pgvector", "quiver", "quiver-nofsync")]
p, q, n = runs
c = max(k for k in q if k.startswith("insert_"))
print(f"\nDurable writes ({q['copy']['rows']:,} rows by one COPY; one-row INSERTs for a fixed time)\n")
print("| measure | pgvector (fsync on) | Quiver (fsync = true) | Quiver/pgvector | Quiver, fsync = false |\n|---|---|---|---|---|")
def row(name, f, fmt="{:,.0f}"):
    a, b, x = f(p), f(q), f(n)
    print(f"| {name} | {fmt.format(a)} | {fmt.format(b)} | {b / a:.2f}x | {fmt.format(x)} |")
row("COPY rows/s", lambda r: r["copy"]["rows_per_s"])
row("one-row INSERTs/s, 1 client", lambda r: r["insert_1"]["per_s"])
row("INSERT p50 ms, 1 client", lambda r: r["insert_1"]["p50_ms"], "{:.2f}")
row("INSERT p99 ms, 1 client", lambda r: r["insert_1"]["p99_ms"], "{:.2f}")
row(f"one-row INSERTs/s, {q[c]['clients']} clients", lambda r: r[c]["per_s"])
row(f"INSERT p50 ms, {q[c]['clients']} clients", lambda r: r[c]["p50_ms"], "{:.2f}")
EOF3
log "results in $OUT_DIR"
exit 0
}
