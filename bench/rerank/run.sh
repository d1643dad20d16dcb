#!/usr/bin/env bash
# WASM vs native re-ranking of vector_search's top-100 for the 1,000
# wordnet-minilm queries, in one process (issue 4's benchmark).
#
#   bench/rerank/run.sh            # K=100, 3 rounds
#   K=50 ROUNDS=5 bench/rerank/run.sh
#
# Builds examples/wasm (wasm32-unknown-unknown, release) and the benchmark
# (release), writes the dataset as COPY text (prepare.py, needs numpy and
# pyarrow: pip install -r ../shared/bench/requirements.txt), then runs it.
# Environment: SHARED_BENCH (default ../shared/bench beside the repo),
# WORK_DIR (default /tmp/quiver-rerank), PYTHON=python3, K, ROUNDS.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
SHARED_BENCH=${SHARED_BENCH:-$repo/../shared/bench}
WORK_DIR=${WORK_DIR:-/tmp/quiver-rerank}
PYTHON=${PYTHON:-python3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/quiver-target}
mkdir -p "$WORK_DIR"

echo "[rerank] building examples/wasm" >&2
CARGO_TARGET_DIR="$CARGO_TARGET_DIR/wasm-examples" \
  cargo build --release --target wasm32-unknown-unknown --manifest-path examples/wasm/Cargo.toml >&2
wasm="$CARGO_TARGET_DIR/wasm-examples/wasm32-unknown-unknown/release/lexical_boost.wasm"

# --workspace: the same feature set as `cargo build --release`, so its build is reused
echo "[rerank] building the benchmark (release)" >&2
cargo build --release --workspace >&2

if [ ! -s "$WORK_DIR/docs.tsv" ] || [ ! -s "$WORK_DIR/queries.tsv" ]; then
  echo "[rerank] writing the dataset to $WORK_DIR" >&2
  "$PYTHON" bench/rerank/prepare.py "$SHARED_BENCH/data/wordnet-minilm" "$WORK_DIR"
fi

"$CARGO_TARGET_DIR/release/quiver-bench-rerank" "$WORK_DIR/docs.tsv" "$WORK_DIR/queries.tsv" "$wasm" "${K:-100}" "${ROUNDS:-3}"
