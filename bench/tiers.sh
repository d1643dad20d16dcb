#!/usr/bin/env bash
# Tiered storage (issue 10): the same wordnet-minilm search on a hot (local) table and
# on a cold (S3: a local moto server) one, in one Quiver release build: after a restart
# with an empty SSD cache (the first pass reads the object store), warm (second pass),
# and after a restart that keeps the SSD cache (memory caches empty, SSD warm).
#
#   QUIVER_BIN=... PYTHON=... [MOTO_SERVER=.../moto_server] bench/tiers.sh   # about 3 minutes
#   ROWS=1000000 ... bench/tiers.sh   # the 1M-row set of bench/scale.sh (made into SCALE_DATA
#       when missing), PARTITIONS (default 8) index partitions, all probed, CACHE_MEMORY
#       (default 4GiB)
# The S3 server: moto (MOTO_SERVER, or beside PYTHON in its venv: pip install "moto[server]"),
# in memory, in Python; or with S3RVER=.../node_modules/.bin/s3rver the file-backed Node.js
# server s3rver (npm install s3rver@3), which serves a ranged GET from a file stream where
# moto reads the whole object: moto is too slow for the 1M-row set's 1.5 GB files. (s3s-fs,
# a Rust one, names its multipart-upload files after the whole key and fails on Lance's
# long keys: "File name too long".)
set -euo pipefail
{
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
export SHARED_BENCH=$(cd "${SHARED_BENCH:-$here/../../shared/bench}" && pwd)
PYTHON=${PYTHON:-python3}
QUIVER_PORT=${QUIVER_PORT:-5433}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/quiver-target}
OUT_DIR=${OUT_DIR:-/tmp/quiver-tiers-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT_DIR"
tmp=$(mktemp -d /tmp/quiver-tiers-tmp.XXXXXX)
log() { echo "[tiers $(date +%H:%M:%S)] $*" >&2; }
. "$here/lib.sh"
s3_pid=""
trap '[ -n "$s3_pid" ] && kill "$s3_pid" 2>/dev/null; cleanup' EXIT

s3_port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
s3_key=bench   # moto takes any credentials
if [ -n "${S3RVER:-}" ]; then
  s3_name="s3rver (files, Node.js) on loopback"
  s3_key=S3RVER   # the one key s3rver knows
  mkdir -p "$tmp/s3"
  "$S3RVER" -d "$tmp/s3" -a 127.0.0.1 -p "$s3_port" --configure-bucket quiver-bench \
    --silent > "$OUT_DIR/s3.log" 2>&1 &
else
  s3_name="moto (in memory) on loopback"
  "${MOTO_SERVER:-$(dirname "$PYTHON")/moto_server}" -H 127.0.0.1 -p "$s3_port" > "$OUT_DIR/s3.log" 2>&1 &
fi
s3_pid=$!
for _ in $(seq 1 100); do
  "$PYTHON" -c "import socket; socket.create_connection(('127.0.0.1', $s3_port))" 2>/dev/null && break
  sleep 0.2
done
if [ -z "${S3RVER:-}" ]; then
  "$PYTHON" -c "import urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:$s3_port/quiver-bench', method='PUT'))"
fi
log "$s3_name (S3) on 127.0.0.1:$s3_port"

cat > "$tmp/quiver.toml" <<TOML
[storage]
cold_root = "s3://quiver-bench/tiers"
ssd_cache_dir = "$tmp/ssd"
[object_store]
endpoint = "http://127.0.0.1:$s3_port"
access_key_id = "$s3_key"
secret_access_key = "$s3_key"
allow_http = true
TOML

scale_args

quiver_bin
run() {   # run PHASE: a fresh Quiver process on the same data directory
  serve_quiver "$tmp/quiver-data" "$OUT_DIR/quiver.log" --config "$tmp/quiver.toml" "${serve_args[@]}"
  wait_ready "$qdsn"
  "$PYTHON" "$here/tiers.py" --dsn "$qdsn" --phase "$1" --out "$OUT_DIR/tiers.json" "${data_args[@]}"
  stop_quiver
}
log "load"; run load
rm -rf "$tmp/ssd"
log "restart, empty SSD cache"; run empty
log "restart, SSD cache kept"; run kept

"$PYTHON" - "$OUT_DIR/tiers.json" "$s3_name" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s3 = sys.argv[2]
hot = r["empty"]["hot_warm"]
p = r.get("partitions", 1)
data = "the 1M-row set of bench/scale.py" if p > 1 else "wordnet-minilm"
print(f"Tiers: {data}, {r['load']['rows']:,} rows x 384-d, {r.get('queries', 1000):,} queries, k = 10, "
      f"ivf_hnsw_sq (nprobes {p} of {p}, ef 64), ORDER BY <=> prepared, one client, result cache off; "
      f"cold = S3 from {s3}; ratios against the hot table, warm\n")
print("| table | run | QPS | p50 ms | p99 ms | p50 vs hot warm | recall@10 | SSD hits / misses / store GETs |")
print("|---|---|---|---|---|---|---|---|")
def warm(x):
    return f"warm (pass {x.get('passes', 1) + 1})"
rows = [("hot", "after restart, first pass", r["empty"]["hot_first"]),
        ("hot", warm(r["empty"]["hot_warm"]), r["empty"]["hot_warm"]),
        ("cold", "after restart, empty SSD cache, first pass", r["empty"]["cold_first"]),
        ("cold", warm(r["empty"]["cold_warm"]), r["empty"]["cold_warm"]),
        ("cold", "after restart, SSD cache kept, first pass", r["kept"]["cold_first"]),
        ("cold", warm(r["kept"]["cold_warm"]), r["kept"]["cold_warm"])]
for t, name, x in rows:
    s = x.get("ssd") or {}
    ssd = f"{s['hits']:,} / {s['misses']:,} / {s['store_gets']:,}" if s else ""
    print(f"| {t} | {name} | {x['qps']:,.0f} | {x['p50_ms']:.3f} | {x['p99_ms']:.3f} | "
          f"{x['p50_ms'] / hot['p50_ms']:.2f}x | {x['recall']:.3f} | {ssd} |")
print(f"\nLoad: COPY {r['load']['copy_s']['hot']:.1f} s hot, {r['load']['copy_s']['cold']:.1f} s cold; "
      f"CREATE INDEX {r['load']['index_s']['hot']:.1f} s hot, {r['load']['index_s']['cold']:.1f} s cold; "
      f"ALTER TABLE … SET (tier = 'cold') of a copy: {r['load']['move_s']:.1f} s.")
w = r["empty"]["cold_warm"]["p50_ms"] / hot["p50_ms"]
k = r["kept"]["cold_warm"]["p50_ms"] / hot["p50_ms"]
print(f"Warm cold-tier p50 {w:.2f}x hot beside the hot table, {k:.2f}x alone after a restart "
      "(target <= 1.5x). Warm: passes until one read from the SSD cache fewer blocks than "
      "1 % of its queries (at most 10).")
PY
log "results in $OUT_DIR"
exit 0
}
