#!/usr/bin/env bash
# Builds the fuzz targets' seed corpora in fuzz/corpus/<target>/ (git-ignored) from the capture
# corpus named by $PCAPLAB_CORPUS (default: ../shared/captures beside the repository), plus the
# committed regression inputs (crates/pcaplab-core/tests/data/fuzz/<target>/). Adds to what is
# there: inputs a fuzzer found earlier stay. Needs python3 (standard library only; zstd
# captures are read only where the zstd tool is installed).
set -euo pipefail
cd "$(dirname "$0")/.."

corpus="${PCAPLAB_CORPUS:-$(cd .. && pwd)/shared/captures}"
if [ ! -d "$corpus" ]; then
  echo "error: no capture corpus at PCAPLAB_CORPUS=$corpus" >&2
  exit 1
fi
python3 fuzz/seed.py "$corpus" fuzz/corpus
shopt -s nullglob
for dir in crates/pcaplab-core/tests/data/fuzz/*/; do
  target=$(basename "$dir")
  mkdir -p "fuzz/corpus/$target"
  cp "$dir"* "fuzz/corpus/$target/"
done
