#!/usr/bin/env bash
# The cost of the PostgreSQL-compatibility layer (issue "Postgres ecosystem
# compatibility"): SELECT 1 and a 10-row vector search over the extended
# protocol, QPS of Quiver builds before and after, against pgvector, in one run.
#
#   QUIVER_BINS="before=/tmp/quiver-4aeb032 after=target/release/quiver" bench/compat.sh
#
# Environment (all optional):
#   QUIVER_BINS      label=binary pairs, run in this order (default: after=the release build)
#   ROWS=20000       vectors loaded (384-d, random, fixed seed)
#   SECONDS_EACH=10  seconds per measured query kind
#   ROUNDS=2         alternating rounds over all systems (the best of them is reported)
#   PGVECTOR_DSN     else a throw-away PostgreSQL 16 + pgvector 0.6.2 from `pip install pgserver`
#   QUIVER_PORT=5433, PYTHON=python3 (needs psycopg and pgserver)
set -euo pipefail
{
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
PYTHON=${PYTHON:-python3}
QUIVER_PORT=${QUIVER_PORT:-5433}
ROWS=${ROWS:-20000}
SECONDS_EACH=${SECONDS_EACH:-10}
ROUNDS=${ROUNDS:-2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/quiver-target}
tmp=$(mktemp -d /tmp/quiver-compat.XXXXXX)
log() { echo "[compat $(date +%H:%M:%S)] $*" >&2; }
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

if [ -z "${QUIVER_BINS:-}" ]; then
  quiver_bin
  QUIVER_BINS="after=$bin"
fi

pgdsn=${PGVECTOR_DSN:-}
if [ -z "$pgdsn" ]; then
  pg_dir=$tmp/pgdata
  log "starting pgserver (PostgreSQL 16 + pgvector 0.6.2)"
  "$PYTHON" "$here/pgserver_ctl.py" start "$pg_dir" > /dev/null
  pgdsn=$("$PYTHON" "$here/pgserver_ctl.py" tune "$pg_dir")
fi

results=$tmp/results.jsonl
for round in $(seq 1 "$ROUNDS"); do
  log "round $round: pgvector"
  "$PYTHON" "$here/compat.py" "$pgdsn" pgvector --dialect pgvector --rows "$ROWS" --seconds "$SECONDS_EACH" >> "$results"
  for pair in $QUIVER_BINS; do
    label=${pair%%=*}
    bin=${pair#*=}
    log "round $round: quiver $label ($bin)"
    rm -rf "$tmp/qdata"
    serve_quiver "$tmp/qdata" "$tmp/quiver-$label.log"
    wait_ready "$qdsn"
    "$PYTHON" "$here/compat.py" "$qdsn" "quiver-$label" --dialect quiver --rows "$ROWS" --seconds "$SECONDS_EACH" >> "$results"
    stop_quiver
  done
done

"$PYTHON" - "$results" <<'EOF'
import json, sys
best = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    b = best.setdefault(r["label"], {})
    for k, v in r.items():
        if k.endswith("_qps"):
            b[k] = max(b.get(k, 0.0), v)
pg = best["pgvector"]
print("| system | SELECT 1 QPS | vs pgvector | 10-NN search QPS | vs pgvector | pgvector-form 10-NN QPS |")
print("|---|---:|---:|---:|---:|---:|")
for label, b in best.items():
    ob = b.get("orderby10_qps")
    print(f"| {label} | {b['select1_qps']:,.0f} | {b['select1_qps'] / pg['select1_qps']:.2f}x "
          f"| {b['search10_qps']:,.0f} | {b['search10_qps'] / pg['search10_qps']:.2f}x "
          f"| {'' if ob is None else f'{ob:,.0f}'} |")
EOF
}
