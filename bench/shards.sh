#!/usr/bin/env bash
# Sharded tables (issue 10), wordnet-minilm over the wire, one Quiver release build:
# 1 vs 4 vs 8 hash shards vs 8 ivf shards at shard_probes 1 / 2 / 4 (recall@10, QPS,
# p50/p99, shards read per query; the 1-shard table is the baseline of the ratios),
# then ALTER TABLE … SET (shards = 8) on the
# 4-shard table under a reader (rows moved, wall time, reader QPS during / before).
#
#   QUIVER_BIN=... bench/shards.sh       # about 10 minutes on 2 cores
#   ROWS=1000000 QUIVER_BIN=... bench/shards.sh   # the 1M-row set of bench/scale.sh (made
#       into SCALE_DATA when missing), PARTITIONS (default 8) index partitions per table
#       in all, CACHE_MEMORY (default 4GiB); about 40 minutes
set -euo pipefail
{
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
export SHARED_BENCH=$(cd "${SHARED_BENCH:-$here/../../shared/bench}" && pwd)
PYTHON=${PYTHON:-python3}
QUIVER_PORT=${QUIVER_PORT:-5433}
SECONDS_EACH=${SECONDS_EACH:-20}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/quiver-target}
OUT_DIR=${OUT_DIR:-/tmp/quiver-shards-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT_DIR"
tmp=$(mktemp -d /tmp/quiver-shards-tmp.XXXXXX)
log() { echo "[shards $(date +%H:%M:%S)] $*" >&2; }
. "$here/lib.sh"

scale_args

quiver_bin
log "quiver: start ($bin)"
serve_quiver "$tmp/quiver-data" "$OUT_DIR/quiver.log" "${serve_args[@]}"
wait_ready "$qdsn"
"$PYTHON" "$here/shards.py" --dsn "$qdsn" --seconds "$SECONDS_EACH" --out "$OUT_DIR/shards.json" "${data_args[@]}"
stop_quiver

"$PYTHON" - "$OUT_DIR/shards.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t = r["tables"]
base = t["1"]
data = "the 1M-row set of bench/scale.py" if r.get("partitions", 1) > 1 else "wordnet-minilm"
print(f"Sharded tables: {data}, {r['rows']:,} rows x 384-d, {r.get('queries', 1000):,} queries, k = 10, "
      f"ivf_hnsw_sq of {r.get('partitions', 1)} partition(s) per table split over its shards "
      "(every partition of a shard read is probed), prepared, one client\n")
print("| shards | ef | recall@10 | QPS | QPS vs 1 shard at ef 64 | p50 ms | p99 ms | shards read per query | warm passes |")
print("|---|---|---|---|---|---|---|---|---|")
b64 = base["settings"]["ef64"]
for n, s in t.items():
    for name, x in s["settings"].items():
        print(f"| {n} (hash) | {name[2:]} | {x['recall']:.3f} | {x['qps']:,.0f} | {x['qps'] / b64['qps']:.2f}x | "
              f"{x['p50_ms']:.2f} | {x['p99_ms']:.2f} | {s['shards_read']} | {x.get('warm_passes', '')} |")
iv = r.get("ivf")
if iv:
    for name, x in iv["settings"].items():
        print(f"| {iv['shards']} (ivf) | 64, shard_probes {name[6:]} | {x['recall']:.3f} | {x['qps']:,.0f} | "
              f"{x['qps'] / b64['qps']:.2f}x | {x['p50_ms']:.2f} | {x['p99_ms']:.2f} | {x['shards_read']:.1f} | "
              f"{x.get('warm_passes', '')} |")
    print(f"\nivf: OPTIMIZE TABLE trained the centroids and moved the rows off the pending shard in "
          f"{iv['train_and_move_s']:.1f} s; rows per shard {iv['rows_per_shard']}.")
print("\nWarm passes: passes of the queries before the measured one, until a pass missed the chunk "
      "cache for at most 1 % of its queries (at most 10).")
print("\n| shards | COPY rows/s | index build s |\n|---|---|---|")
for n, s in t.items():
    print(f"| {n} | {s['copy_rows_per_s']:,.0f} | {s['index_s']:.1f} |")
if iv:
    print(f"| {iv['shards']} (ivf) | {iv['copy_rows_per_s']:,.0f} | {iv['index_s']:.1f} |")
b = r["rebalance"]
rb, rd, ra = b["reader_before"], b["reader_during"], b["reader_after"]
print(f"\nRebalancing 4 -> 8 shards under one reader: moved {b['rows_moved']:,} of {b['rows']:,} rows "
      f"({b['moved_fraction'] * 100:.1f} %; the ring's expectation 50 %) in {b['wall_s']:.1f} s; "
      f"checksum (count, sum id, sum bucket) before {b['checksum_before']} after {b['checksum_after']}.\n")
print("| reader | queries | QPS | vs before | p50 ms | p99 ms |\n|---|---|---|---|---|---|")
for name, x in [("before the move", rb), ("during the move", rd), ("after (8 shards)", ra)]:
    print(f"| {name} | {x['queries']:,} | {x['qps']:,.0f} | {x['qps'] / rb['qps']:.2f}x | {x['p50_ms']:.2f} | {x['p99_ms']:.2f} |")
a = b["after"]
print(f"\nAfter the move: {b['shards_after']} shards read per query, recall@10 {a['recall']:.3f}, {a['qps']:,.0f} QPS.")
def shards(label, rows):
    print(f"\n{label}: per shard rows / fragments / deleted rows / unindexed rows: " +
          ", ".join(f"{x['rows']:,}/{x['fragments']}/{x['deleted_rows']:,}/{x['unindexed_rows']:,}" for x in rows))
if "shards_after_move" in b:
    shards("After the move", b["shards_after_move"])
if "shards_after_optimize" in b:
    shards("After OPTIMIZE TABLE", b["shards_after_optimize"])
if "shards" in t.get("8", {}):
    shards("The 8-shard table loaded directly", t["8"]["shards"])
if "after_optimize" in b:
    o = b["after_optimize"]
    print(f"After OPTIMIZE TABLE ({b['optimize_s']:.1f} s): recall@10 {o['recall']:.3f}, {o['qps']:,.0f} QPS, "
          f"p99 {o['p99_ms']:.2f} ms.")
if "after_reindex" in b:
    x = b["after_reindex"]
    print(f"After REINDEX TABLE ({b['reindex_s']:.1f} s): recall@10 {x['recall']:.3f}, {x['qps']:,.0f} QPS, "
          f"p99 {x['p99_ms']:.2f} ms.")
PY
log "results in $OUT_DIR"
exit 0
}
