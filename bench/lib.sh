# Sourced by the bench scripts: the 1M-row set's arguments, the Quiver binary, starting,
# awaiting and stopping it, and the clean-up trap. Expects here, repo, PYTHON,
# tmp, QUIVER_PORT, CARGO_TARGET_DIR and a log function; sets quiver_pid,
# pg_dir (set it while a pgserver runs, so the trap stops it), qdsn and bin.
quiver_pid="" pg_dir=""
qdsn="postgresql://postgres@127.0.0.1:$QUIVER_PORT/postgres?sslmode=disable"
cleanup() {
  local rc=$?
  if [ -n "$quiver_pid" ]; then kill -TERM "$quiver_pid" 2>/dev/null || true; wait "$quiver_pid" 2>/dev/null || true; fi
  if [ -n "$pg_dir" ]; then "$PYTHON" "$here/pgserver_ctl.py" stop "$pg_dir" || true; fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT

scale_args() {   # with ROWS: the 1M-row set (made into SCALE_DATA when missing); sets data_args, serve_args
  data_args=()
  serve_args=()
  if [ -n "${ROWS:-}" ]; then
    SCALE_DATA=${SCALE_DATA:-/tmp/quiver-scale-data-$ROWS}
    if [ ! -f "$SCALE_DATA/MANIFEST.json" ]; then
      log "making $ROWS rows in $SCALE_DATA"
      "$PYTHON" "$here/scale.py" make --rows "$ROWS" --out "$SCALE_DATA"
    fi
    data_args=(--scale "$SCALE_DATA" --partitions "${PARTITIONS:-8}")
    serve_args=(--cache-memory "${CACHE_MEMORY:-4GiB}")
  fi
}

quiver_bin() {   # sets bin: QUIVER_BIN, or the release build
  bin=${QUIVER_BIN:-}
  if [ -z "$bin" ]; then
    log "building quiver (release)"
    # env -u OUT_DIR: build scripts (ring) track OUT_DIR, and a script's own
    # OUT_DIR would make cargo rebuild half the dependency tree
    (cd "$repo" && env -u OUT_DIR cargo build --release --bin quiver)
    bin=$CARGO_TARGET_DIR/release/quiver
  fi
}
serve_quiver() {   # serve_quiver DATA_DIR LOG_FILE [serve flags...]: starts it in the background
  local data=$1 logf=$2
  shift 2
  "$bin" serve --data-dir "$data" --listen "127.0.0.1:$QUIVER_PORT" "$@" >> "$logf" 2>&1 &
  quiver_pid=$!
}
wait_ready() {   # wait_ready DSN: until it answers SELECT 1 (at most 2 minutes)
  for _ in $(seq 1 240); do
    "$PYTHON" -c "import psycopg,sys; psycopg.connect(sys.argv[1], connect_timeout=2).execute('SELECT 1')" "$1" 2>/dev/null && return 0
    sleep 0.5
  done
  log "no answer from $1"
  return 1
}
stop_quiver() { kill -TERM "$quiver_pid"; wait "$quiver_pid" 2>/dev/null || true; quiver_pid=""; }
