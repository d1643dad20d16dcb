#!/usr/bin/env bash
# The result cache (issue 10), wordnet-minilm over the wire, one Quiver release build:
# hit vs miss latency of repeated queries, against the same queries with the cache off
# (the baseline of the ratios), in the vector_search and pgvector ORDER BY forms.
#
#   QUIVER_BIN=... bench/caches.sh       # about 5 minutes on 2 cores
#   ROWS=1000000 QUIVER_BIN=... bench/caches.sh   # the 1M-row set of bench/scale.sh (made
#       into SCALE_DATA when missing), PARTITIONS (default 8) index partitions, all probed,
#       CACHE_MEMORY (default 4GiB); about 10 minutes
set -euo pipefail
{
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
export SHARED_BENCH=$(cd "${SHARED_BENCH:-$here/../../shared/bench}" && pwd)
PYTHON=${PYTHON:-python3}
QUIVER_PORT=${QUIVER_PORT:-5433}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/quiver-target}
OUT_DIR=${OUT_DIR:-/tmp/quiver-caches-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT_DIR"
tmp=$(mktemp -d /tmp/quiver-caches-tmp.XXXXXX)
log() { echo "[caches $(date +%H:%M:%S)] $*" >&2; }
. "$here/lib.sh"

scale_args

quiver_bin
log "quiver: start ($bin)"
serve_quiver "$tmp/quiver-data" "$OUT_DIR/quiver.log" "${serve_args[@]}"
wait_ready "$qdsn"
"$PYTHON" "$here/caches.py" --dsn "$qdsn" --out "$OUT_DIR/caches.json" "${data_args[@]}"
stop_quiver

"$PYTHON" - "$OUT_DIR/caches.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
data = "the 1M-row set of bench/scale.py" if r.get("partitions", 1) > 1 else "wordnet-minilm"
p = r.get("partitions", 1)
print(f"Result cache: {data}, {r['rows']:,} rows x 384-d, {r.get('queries', 1000):,} queries, k = 10, "
      f"ivf_hnsw_sq (nprobes {p} of {p}, ef 64), prepared, one client; ratios against the cache off\n")
print("| form | run | QPS | vs cache off | p50 ms | p99 ms | p50 speed-up vs cache off |")
print("|---|---|---|---|---|---|---|")
for form, f in r["forms"].items():
    b = f["baseline"]
    for name, x in [("cache off (baseline)", b), ("miss (first ask, kept)", f["miss"]),
                    ("hit (the queries again)", f["hit"]), ("hit (one query repeated)", f["one_query"])]:
        print(f"| {form} | {name} | {x['qps']:,.0f} | {x['qps'] / b['qps']:.2f}x | {x['p50_ms']:.3f} | "
              f"{x['p99_ms']:.3f} | {b['p50_ms'] / x['p50_ms']:.1f}x |")
for form, f in r["forms"].items():
    print(f"\n{form}: recall@10 {f['recall']:.3f}; hit p50 {f['hit']['p50_ms']:.3f} ms "
          f"(target <= 0.3 ms), {f['miss']['p50_ms'] / f['hit']['p50_ms']:.1f}x faster than a miss "
          f"(target >= 5x); after a one-row INSERT the next ask was a miss ({f['after_write_ms']:.2f} ms) "
          f"and returned the new row, the next a hit, and one after the row's flush into Lance a hit; "
          f"counters {f['counters']}")
f = r["floor"]
print(f"\nThe protocol's floor (SHOW quiver.ef, prepared, same client): p50 {f['p50_ms']:.3f} ms, p99 {f['p99_ms']:.3f} ms.")
print("\n| cache | hits | misses | entries | bytes | capacity |\n|---|---|---|---|---|---|")
for row in r["caches"]:
    print("| " + " | ".join("" if v is None else f"{v:,}" if isinstance(v, int) else str(v) for v in row) + " |")
PY
log "results in $OUT_DIR"
exit 0
}
