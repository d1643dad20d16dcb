#!/usr/bin/env bash
# Scale benchmark ("Engine at scale"): ROWS (default 1,000,000) 384-d rows, the
# wordnet-minilm vectors tiled with small noise (bench/scale.py make, cached in
# SCALE_DATA), against pgvector in the same run:
# - pgvector 0.6.2 (pgserver, shared_buffers = 2GB): COPY, HNSW m=16 ef_construction=64
#   (maintenance_work_mem 8GB), recall@10 / QPS at ef_search 40 and 100, a search right
#   after each of 20 one-row INSERTs, then a restart: time to the first answer;
# - Quiver (release build, durable commits on): started with --cache-memory 256MiB: COPY,
#   ivf_hnsw_sq (PARTITIONS partitions), the same queries and INSERTs, a restart with
#   256MiB (time to first answer, queries), a restart with BUDGET_FIT (default 4GiB, the
#   table fits): time to first answer, queries twice (cold, then warm).
# Memory: PSS of the server's processes (PostgreSQL: postmaster and children), peak per step.
#
#   QUIVER_BIN=... bench/scale.sh            # about 30-40 minutes on 2 cores
#   SYSTEMS=quiver OUT_DIR=<an earlier run> QUIVER_BIN=... bench/scale.sh   # one side again
set -euo pipefail
{
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
export SHARED_BENCH=$(cd "${SHARED_BENCH:-$here/../../shared/bench}" && pwd)
PYTHON=${PYTHON:-python3}
ROWS=${ROWS:-1000000}
PARTITIONS=${PARTITIONS:-8}
BUDGET_FIT=${BUDGET_FIT:-4GiB}
QUIVER_PORT=${QUIVER_PORT:-5433}
SCALE_DATA=${SCALE_DATA:-/tmp/quiver-scale-data-$ROWS}
SYSTEMS=${SYSTEMS:-pgvector quiver}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/quiver-target}
OUT_DIR=${OUT_DIR:-/tmp/quiver-scale-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT_DIR"
tmp=$(mktemp -d /tmp/quiver-scale-tmp.XXXXXX)
log() { echo "[scale $(date +%H:%M:%S)] $*" >&2; }
. "$here/lib.sh"
step() { "$PYTHON" "$here/scale.py" "$@" --data "$SCALE_DATA"; }
# Executables read cold before every start (scale.py's docstring says why).
evict() { "$PYTHON" "$here/scale.py" evict "$@"; }

if [ ! -f "$SCALE_DATA/MANIFEST.json" ]; then
  log "making $ROWS rows in $SCALE_DATA"
  "$PYTHON" "$here/scale.py" make --rows "$ROWS" --out "$SCALE_DATA"
fi

# ------------------------------------------------------------------ pgvector
if [[ " $SYSTEMS " == *" pgvector "* ]]; then
pg_dir=$tmp/pgdata
log "pgvector: start (pgserver), COPY, HNSW"
evict --pgserver
dsn=$("$PYTHON" "$here/pgserver_ctl.py" tune "$pg_dir")
pg_pid() { head -1 "$pg_dir/postmaster.pid"; }
step load --system pgvector --dsn "$dsn" --pid "$(pg_pid)" --out "$OUT_DIR/pgvector-load.json"
step query --system pgvector --dsn "$dsn" --pid "$(pg_pid)" --label loaded --inserts 20 --out "$OUT_DIR/pgvector-query.json"
"$PYTHON" "$here/pgserver_ctl.py" stop "$pg_dir"
evict --pgserver
since=$(date +%s.%N)
dsn=$("$PYTHON" "$here/pgserver_ctl.py" start "$pg_dir")
step first --system pgvector --dsn "$dsn" --since "$since" --out "$OUT_DIR/pgvector-first.json"
step query --system pgvector --dsn "$dsn" --pid "$(pg_pid)" --label restarted --out "$OUT_DIR/pgvector-restarted.json"
"$PYTHON" "$here/pgserver_ctl.py" stop "$pg_dir"
pg_dir=""
fi

# ------------------------------------------------------------------ Quiver
if [[ " $SYSTEMS " == *" quiver "* ]]; then
quiver_bin
serve() {   # serve BUDGET: starts Quiver on the one data directory, noting when
  evict "$bin"
  since=$(date +%s.%N)
  serve_quiver "$tmp/quiver-data" "$OUT_DIR/quiver.log" --cache-memory "$1"
}
log "quiver: start ($bin, cache 256MiB), COPY, ivf_hnsw_sq ($PARTITIONS partitions)"
serve 256MiB
wait_ready "$qdsn"
step load --system quiver --dsn "$qdsn" --pid "$quiver_pid" --partitions "$PARTITIONS" --out "$OUT_DIR/quiver-load.json"
step query --system quiver --dsn "$qdsn" --pid "$quiver_pid" --label "256MiB" --inserts 20 --out "$OUT_DIR/quiver-query.json"
stop_quiver
serve 256MiB
step first --system quiver --dsn "$qdsn" --since "$since" --out "$OUT_DIR/quiver-first.json"
step query --system quiver --dsn "$qdsn" --pid "$quiver_pid" --label "256MiB, restarted" --out "$OUT_DIR/quiver-restarted.json"
stop_quiver
serve "$BUDGET_FIT"
step first --system quiver --dsn "$qdsn" --since "$since" --out "$OUT_DIR/quiver-fit-first.json"
step query --system quiver --dsn "$qdsn" --pid "$quiver_pid" --label "$BUDGET_FIT, cold" --out "$OUT_DIR/quiver-fit-cold.json"
step query --system quiver --dsn "$qdsn" --pid "$quiver_pid" --label "$BUDGET_FIT, warm" --inserts 20 --out "$OUT_DIR/quiver-fit.json"
stop_quiver
fi

# ------------------------------------------------------------------ table
"$PYTHON" - "$OUT_DIR" "$BUDGET_FIT" <<'EOF'
import json, sys, pathlib
d, fit = pathlib.Path(sys.argv[1]), sys.argv[2]
j = lambda n: json.loads((d / f"{n}.json").read_text())
pl, pq, pr, pf = j("pgvector-load"), j("pgvector-query"), j("pgvector-restarted"), j("pgvector-first")
ql, qq, qr, qf = j("quiver-load"), j("quiver-query"), j("quiver-restarted"), j("quiver-first")
fq, ff = j("quiver-fit"), j("quiver-fit-first")
print(f"Scale: {pl['rows']:,} rows x 384-d (wordnet-minilm tiled with noise), k = 10, single client, prepared\n")
print("| measure | pgvector 0.6.2 | Quiver, 256MiB budget | Quiver, " + fit + " budget |\n|---|---|---|---|")
print(f"| COPY rows/s (durable) | {pl['copy']['rows_per_s']:,.0f} | {ql['copy']['rows_per_s']:,.0f} | |")
print(f"| memory peak during COPY, MiB | {pl['copy']['peak_mib']:,.0f} | {ql['copy']['peak_mib']:,.0f} | |")
print(f"| index build s | {pl['index']['seconds']:.0f} (hnsw) | {ql['index']['seconds']:.0f} (ivf_hnsw_sq, {ql['index']['partitions']} partitions) | |")
print(f"| memory peak during index build, MiB | {pl['index']['peak_mib']:,.0f} | {ql['index']['peak_mib']:,.0f} | |")
def settings(r):
    return "; ".join(f"{n}: {s['recall']:.3f} / {s['qps']:,.0f}" for n, s in r["settings"].items())
print(f"| recall@10 / QPS per setting (after load) | {settings(pq)} | {settings(qq)} | |")
print(f"| recall@10 / QPS after a restart | {settings(pr)} | {settings(qr)} | {settings(fq)} (warm) |")
print(f"| memory peak during queries, MiB | {pq['peak_mib']:,.0f} | {qq['peak_mib']:,.0f} (restarted: {qr['peak_mib']:,.0f}) | {fq['peak_mib']:,.0f} |")
pi, qi, fi = pq["insert_then_search"], qq["insert_then_search"], fq["insert_then_search"]
print(f"| search right after a one-row INSERT, p50 / max ms | {pi['search_after_p50_ms']:.2f} / {pi['search_after_max_ms']:.2f} | {qi['search_after_p50_ms']:.2f} / {qi['search_after_max_ms']:.2f} | {fi['search_after_p50_ms']:.2f} / {fi['search_after_max_ms']:.2f} |")
print(f"| one-row INSERT p50 ms | {pi['insert_p50_ms']:.2f} | {qi['insert_p50_ms']:.2f} | |")
print(f"| restart: time to the first answer, s | {pf['first_answer_s']:.2f} | {qf['first_answer_s']:.2f} | {ff['first_answer_s']:.2f} |")
EOF
log "results in $OUT_DIR"
exit 0
}
