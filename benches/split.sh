#!/usr/bin/env bash
# One capture in ranges (issue 21): a whole conversion vs split conversions of the same file in
# the same run — wall time, the count / convert / merge phases, peak RSS, flows.
#
#   benches/split.sh                       # 3,720 copies (4.3 GB) of the mixed corpus capture
#   COPIES=120 SIZES="16777216" benches/split.sh
#
# Input: COPIES copies (rounded up to a multiple of 120) of the corpus' pcap-parser__wireshark_samples-test.pcapng, each shifted
# in time past the one before (editcap -t), appended (mergecap -a): timestamps in file order,
# as a real long capture has them (benches/lib.sh's split_input). Made once in BENCH_DIR
# (default: a temporary directory). benches/split_steps.sh runs each step in its own process.
# Each conversion writes the packet table's Parquet and the flow table's Parquet (the core's
# `split` example: RANGE_BYTES 0 is the whole conversion); WORKERS ranges at a time (default 2).
# Needs editcap, mergecap (apt-get install tshark) and GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
copies="${COPIES:-3720}"
read -r -a sizes <<<"${SIZES:-1073741824 536870912 268435456}"
workers="${WORKERS:-2}"
command -v /usr/bin/time >/dev/null || { echo "error: GNU time is not installed (apt-get install time)" >&2; exit 1; }
# shellcheck source=benches/lib.sh
. benches/lib.sh
dir="${BENCH_DIR:-}"
if [ -z "$dir" ]; then dir="$(mktemp -d)"; trap 'rm -rf "$dir"' EXIT; fi
split_input "$dir" "$copies"
cargo build --release -q -p pcaplab-core --example split
bin="${CARGO_TARGET_DIR:-target}/release/examples/split"
echo "input: $input ($(file_bytes "$input") bytes), $workers workers"
for size in 0 "${sizes[@]}"; do
  /usr/bin/time -f "  peak RSS %M KB, CPU %U s user + %S s sys" "$bin" "$input" "$size" "$workers"
done
