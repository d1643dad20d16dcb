#!/usr/bin/env bash
# Quiver vs pgvector over the wire, in one run, on this machine.
#
#   bench/run.sh                      # full run: both systems, 116,659 rows, 1,000 queries
#   EXTRA_ARGS="--limit-rows 5000 --queries 100" bench/run.sh    # quick check of the script
#   SYSTEMS=pgvector bench/run.sh     # one side only
#
# For each system, with shared/bench/harness.py: COPY into an unindexed table,
# CREATE INDEX, then recall@10 / QPS per search setting, unfiltered and filtered
# (bucket1 = bucket < 1, cat1 = category = 'noun.quantity', ~1 % of rows each);
# then bench/compare.py prints one markdown table with the Quiver/pgvector ratios.
#
# pgvector: PGVECTOR_DSN, or a throw-away PostgreSQL 16 + pgvector 0.6.2 from
#   `pip install pgserver` (shared_buffers=2GB, jit=off, as shared/bench/README.md advises),
#   dialect shared/bench/dialects/pgvector06.toml, HNSW m=16 ef_construction=64.
# Quiver: QUIVER_DSN, or `quiver serve` built here (release profile; QUIVER_PROFILE=dev for a
#   debug build, QUIVER_BIN=path to skip the build) on a temp data dir, 127.0.0.1:$QUIVER_PORT,
#   dialect bench/quiver.toml.
#
# Environment (all optional):
#   SYSTEMS="pgvector quiver"   which sides to run, in this order
#   SHARED_BENCH                the harness kit (default: ../shared/bench beside the repo)
#   OUT_DIR                     result folder (default: a new /tmp/quiver-bench-<time>)
#   EXTRA_ARGS                  added to every harness call, e.g. "--limit-rows 5000 --queries 100"
#   FILTERS=bucket1,cat1        filters for the filtered runs
#   PGVECTOR_DSN, PGVECTOR_DIALECT, PGVECTOR_SETTINGS=ef40,ef100, PGVECTOR_FILTERED_SETTINGS=ef40,ef1000
#   QUIVER_DSN, QUIVER_BIN, QUIVER_PROFILE=release, QUIVER_PORT=5433, QUIVER_START_TIMEOUT=120 (s),
#   QUIVER_SETTINGS, QUIVER_FILTERED_SETTINGS (default: all of the dialect's)
#   KEEP_TMP=1                  keep the temp data dirs (Quiver data, pgserver PGDATA)
#   PYTHON=python3
# Exits non-zero when a side failed; the table is printed with whatever finished.
set -euo pipefail
# The whole script is one { } block: bash parses it completely before running it,
# so editing this file during a (long) run does not derail the run.
{
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
SHARED_BENCH=$(cd "${SHARED_BENCH:-$here/../../shared/bench}" && pwd)
PYTHON=${PYTHON:-python3}
SYSTEMS=${SYSTEMS:-pgvector quiver}
FILTERS=${FILTERS:-bucket1,cat1}
EXTRA_ARGS=${EXTRA_ARGS:-}
PGVECTOR_DIALECT=${PGVECTOR_DIALECT:-$SHARED_BENCH/dialects/pgvector06.toml}
PGVECTOR_SETTINGS=${PGVECTOR_SETTINGS:-ef40,ef100}
PGVECTOR_FILTERED_SETTINGS=${PGVECTOR_FILTERED_SETTINGS:-ef40,ef1000}
QUIVER_PROFILE=${QUIVER_PROFILE:-release}
QUIVER_PORT=${QUIVER_PORT:-5433}
QUIVER_START_TIMEOUT=${QUIVER_START_TIMEOUT:-120}
QUIVER_SETTINGS=${QUIVER_SETTINGS:-}
QUIVER_FILTERED_SETTINGS=${QUIVER_FILTERED_SETTINGS:-}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/quiver-target}
OUT_DIR=${OUT_DIR:-/tmp/quiver-bench-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
tmp=$(mktemp -d /tmp/quiver-bench-tmp.XXXXXX)

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }

# ------------------------------------------------------------------ clean-up
quiver_pid=""
pg_dir=""
stop_quiver() {   # TERM, up to 10 s to shut down, then KILL
  if [ -n "$quiver_pid" ] && kill -0 "$quiver_pid" 2>/dev/null; then
    log "stopping quiver (pid $quiver_pid)"
    kill -TERM "$quiver_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$quiver_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$quiver_pid" 2>/dev/null || true
    wait "$quiver_pid" 2>/dev/null || true
  fi
  quiver_pid=""
}
cleanup() {
  local rc=$?
  stop_quiver
  if [ -n "$pg_dir" ]; then
    log "stopping pgserver ($pg_dir)"
    "$PYTHON" "$here/pgserver_ctl.py" stop "$pg_dir" || true
  fi
  if [ -z "${KEEP_TMP:-}" ]; then rm -rf "$tmp"; else log "kept $tmp"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ helpers
# python packages the harness needs (and pgserver when we start pgvector ourselves)
ensure_python() {
  local need=()
  "$PYTHON" -c "import psycopg, numpy, pyarrow" 2>/dev/null || need+=(-r "$SHARED_BENCH/requirements.txt")
  if [ "$1" = with-pgserver ]; then "$PYTHON" -c "import pgserver" 2>/dev/null || need+=(pgserver); fi
  if [ ${#need[@]} -gt 0 ]; then
    log "pip install ${need[*]}"
    "$PYTHON" -m pip install -q "${need[@]}"
  fi
}

harness() {   # harness ARGS... (dataset, metric and EXTRA_ARGS added)
  # shellcheck disable=SC2086  # EXTRA_ARGS is a word list on purpose
  "$PYTHON" "$SHARED_BENCH/harness.py" --data "$SHARED_BENCH/data/wordnet-minilm" --metric cosine \
    "$@" $EXTRA_ARGS
}

settings_arg() { if [ -n "$1" ]; then echo "--settings=$1"; fi; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# wait until DSN answers SELECT 1 (the server process PID must stay alive), or time out
wait_for_server() {
  local dsn=$1 pid=$2 timeout=$3 start=$SECONDS
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then log "quiver exited during start-up"; return 1; fi
    if port_open 127.0.0.1 "$QUIVER_PORT" &&
       "$PYTHON" -c "import psycopg,sys; psycopg.connect(sys.argv[1], connect_timeout=5).execute('SELECT 1')" \
         "$dsn" 2>/dev/null; then
      return 0
    fi
    if (( SECONDS - start >= timeout )); then log "quiver did not accept connections within ${timeout}s"; return 1; fi
    sleep 0.5
  done
}

machine_info() {
  {
    echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host:      $(uname -srm)"
    echo "cpu:       $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "memory:    $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "load avg:  $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "python:    $("$PYTHON" --version 2>&1)"
    echo "rustc:     $(rustc --version 2>/dev/null || echo none)"
    echo "quiver:    commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$repo" diff --quiet 2>/dev/null || echo ' (dirty)'); $(if [ -n "${QUIVER_DSN:-}" ]; then echo "server at QUIVER_DSN"; elif [ -n "${QUIVER_BIN:-}" ]; then echo "binary $QUIVER_BIN"; else echo "built here, profile $QUIVER_PROFILE"; fi)"
    echo "systems:   $SYSTEMS; pgvector $(if [ -n "${PGVECTOR_DSN:-}" ]; then echo "at PGVECTOR_DSN"; else echo "from pgserver"; fi), dialect $(basename "$PGVECTOR_DIALECT")"
    echo "harness:   $SHARED_BENCH ($(sha256sum "$SHARED_BENCH/harness.py" | cut -c1-12))"
    echo "args:      FILTERS=$FILTERS PGVECTOR_SETTINGS=$PGVECTOR_SETTINGS PGVECTOR_FILTERED_SETTINGS=$PGVECTOR_FILTERED_SETTINGS EXTRA_ARGS='$EXTRA_ARGS'"
    echo "busy:      $(ps -eo pcpu=,comm= --sort=-pcpu | awk '$1 > 20 {printf "%s(%s%%) ", $2, $1}')"
  } > "$OUT_DIR/machine.txt"
}

failed=()

# ------------------------------------------------------------------ pgvector
run_pgvector() {
  local dsn=${PGVECTOR_DSN:-}
  if [ -z "$dsn" ]; then
    ensure_python with-pgserver || return 1
    pg_dir=$tmp/pgdata
    log "starting PostgreSQL + pgvector (pgserver) in $pg_dir, tuned: shared_buffers=2GB, jit=off"
    dsn=$("$PYTHON" "$here/pgserver_ctl.py" tune "$pg_dir") || return 1
  else
    ensure_python plain || return 1
  fi
  log "pgvector: load + HNSW build + unfiltered search ($PGVECTOR_SETTINGS)"
  harness --dsn "$dsn" --dialect "$PGVECTOR_DIALECT" --index hnsw --filter none \
    $(settings_arg "$PGVECTOR_SETTINGS") --label pgvector --out "$OUT_DIR/pgvector-unfiltered.json" || return 1
  log "pgvector: filtered search $FILTERS ($PGVECTOR_FILTERED_SETTINGS)"
  harness --dsn "$dsn" --dialect "$PGVECTOR_DIALECT" --index hnsw --skip-load --filter "$FILTERS" \
    $(settings_arg "$PGVECTOR_FILTERED_SETTINGS") --label pgvector --out "$OUT_DIR/pgvector-filtered.json" || return 1
  if [ -n "$pg_dir" ]; then   # free the memory and CPU before the other side runs
    "$PYTHON" "$here/pgserver_ctl.py" stop "$pg_dir"
    pg_dir=""
  fi
}

# ------------------------------------------------------------------ Quiver
run_quiver() {
  local dsn=${QUIVER_DSN:-}
  ensure_python plain || return 1
  if [ -z "$dsn" ]; then
    local bin=${QUIVER_BIN:-}
    if [ -z "$bin" ]; then
      local flag=--release dir=release
      if [ "$QUIVER_PROFILE" = dev ]; then flag="" dir=debug; fi
      log "building quiver ($QUIVER_PROFILE) into $CARGO_TARGET_DIR"
      # env -u OUT_DIR: build scripts (ring) track OUT_DIR, and this script's own
      # OUT_DIR would make cargo rebuild half the dependency tree
      (cd "$repo" && env -u OUT_DIR cargo build $flag --bin quiver) || return 1
      bin=$CARGO_TARGET_DIR/$dir/quiver
    fi
    if port_open 127.0.0.1 "$QUIVER_PORT"; then
      log "127.0.0.1:$QUIVER_PORT is already in use: stop that server, or set QUIVER_DSN / QUIVER_PORT"
      return 1
    fi
    log "starting $bin serve --data-dir $tmp/quiver-data --listen 127.0.0.1:$QUIVER_PORT (log: $OUT_DIR/quiver.log)"
    "$bin" serve --data-dir "$tmp/quiver-data" --listen "127.0.0.1:$QUIVER_PORT" > "$OUT_DIR/quiver.log" 2>&1 &
    quiver_pid=$!
    dsn="postgresql://postgres@127.0.0.1:$QUIVER_PORT/postgres?sslmode=disable"
    if ! wait_for_server "$dsn" "$quiver_pid" "$QUIVER_START_TIMEOUT"; then
      tail -n 20 "$OUT_DIR/quiver.log" >&2 || true
      return 1
    fi
  fi
  log "quiver: load + index build + unfiltered search"
  harness --dsn "$dsn" --dialect "$here/quiver.toml" --index ivf_hnsw_sq --filter none \
    $(settings_arg "$QUIVER_SETTINGS") --label quiver --out "$OUT_DIR/quiver-unfiltered.json" || return 1
  log "quiver: filtered search $FILTERS"
  harness --dsn "$dsn" --dialect "$here/quiver.toml" --index ivf_hnsw_sq --skip-load --filter "$FILTERS" \
    $(settings_arg "$QUIVER_FILTERED_SETTINGS") --label quiver --out "$OUT_DIR/quiver-filtered.json" || return 1
  stop_quiver   # free the memory and CPU before another side runs
}

# ------------------------------------------------------------------ main
# set -e does not apply inside a function called with ||: every step above ends in `|| return 1`
log "results in $OUT_DIR"
machine_info
for s in $SYSTEMS; do
  rm -f "$OUT_DIR/$s"-*.json   # a reused OUT_DIR must not mix in an older run
  case $s in
    pgvector) run_pgvector || { log "pgvector side FAILED"; failed+=(pgvector); } ;;
    quiver) run_quiver || { log "quiver side FAILED"; failed+=(quiver); } ;;
    *) log "unknown system $s (want pgvector, quiver)"; failed+=("$s") ;;
  esac
done

shopt -s nullglob
results=("$OUT_DIR"/pgvector-*.json "$OUT_DIR"/quiver-*.json)
if [ ${#results[@]} -gt 0 ]; then
  "$PYTHON" "$here/compare.py" --machine "$OUT_DIR/machine.txt" "${results[@]}" | tee "$OUT_DIR/comparison.md"
  log "table: $OUT_DIR/comparison.md"
fi
if [ ${#failed[@]} -gt 0 ]; then log "failed: ${failed[*]}"; exit 1; fi
exit 0
}
