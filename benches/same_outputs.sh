#!/usr/bin/env bash
# Do two pcaplab builds write the same Parquet for every capture of the corpus?
#
#   A_BIN=/path/to/pcaplab B_BIN=/path/to/other/pcaplab benches/same_outputs.sh
#   A_BIN=… B_BIN=… OUT_DIR=DIR benches/same_outputs.sh      (keeps the outputs in DIR)
#
# Converts every file of the corpus' manifest.csv and manifest-depth.csv with both builds
# (`convert FILE --out DIR --format parquet,flows --quiet`) and compares the packet and flow
# Parquet of each capture column by column with pyarrow (benches/same_outputs.py: schema, row
# count, then each column's values; the first differing row and column on a mismatch). Files
# both builds reject as not captures are counted and listed. Exit status 0 when all is the same,
# 1 on a difference, 2 on an error. Without B_BIN, B is this tree's
# `cargo build --release -p pcaplab-cli`. FORMATS overrides parquet,flows. COMMON_COLUMNS=1
# compares only the columns both builds write (for a change that adds columns). The corpus is
# PCAPLAB_CORPUS (default: ../shared/captures beside the repository); needs the project venv
# (bash .ci/venv makes .venv with pyarrow).
set -euo pipefail
# Paths given relative to where the script was started, before moving to the repository.
for var in A_BIN B_BIN OUT_DIR; do
  case "${!var:-}" in */*) printf -v "$var" '%s' "$(realpath -m "${!var}")" ;; esac
done
cd "$(dirname "$0")/.."

corpus="${PCAPLAB_CORPUS:-$(cd .. && pwd)/shared/captures}"
[ -n "${A_BIN:-}" ] || { echo "error: set A_BIN (and B_BIN) to the pcaplab builds to compare" >&2; exit 2; }
if [ -z "${B_BIN:-}" ]; then
  cargo build --release -q -p pcaplab-cli
  B_BIN="$PWD/target/release/pcaplab"
fi
for var in A_BIN B_BIN; do
  [ -x "$(command -v "${!var}")" ] || { echo "error: $var=${!var} is not an executable" >&2; exit 2; }
done
[ -f "$corpus/manifest.csv" ] || { echo "error: $corpus/manifest.csv not found (set PCAPLAB_CORPUS)" >&2; exit 2; }
.venv/bin/python -c 'import pyarrow' 2>/dev/null || {
  echo "error: .venv with pyarrow is missing (bash .ci/venv)" >&2; exit 2; }

args=("$A_BIN" "$B_BIN" --corpus "$corpus" --formats "${FORMATS:-parquet,flows}")
if [ -n "${COMMON_COLUMNS:-}" ]; then args+=(--common-columns); fi
[ -z "${OUT_DIR:-}" ] || args+=(--out "$OUT_DIR")
exec .venv/bin/python benches/same_outputs.py "${args[@]}"
