#!/usr/bin/env bash
# One capture in ranges (issue 21): a whole conversion vs split conversions of the same file in
# the same run — wall time, the count / convert / merge phases, peak RSS, flows.
#
#   benches/split.sh                       # 3,720 copies (4.3 GB) of the mixed corpus capture
#   COPIES=120 SIZES="16777216" benches/split.sh
#
# Input: COPIES copies (rounded up to a multiple of 120) of the corpus' pcap-parser__wireshark_samples-test.pcapng, each shifted
# in time past the one before (editcap -t), appended (mergecap -a): timestamps in file order,
# as a real long capture has them. Made once in BENCH_DIR (default: a temporary directory).
# Each conversion writes the packet table's Parquet and the flow table's Parquet (the core's
# `split` example: RANGE_BYTES 0 is the whole conversion); WORKERS ranges at a time (default 2).
# Needs editcap, mergecap (apt-get install tshark) and GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus="${PCAPLAB_CORPUS:-$(cd .. && pwd)/shared/captures}"
src="$corpus/pcap-parser__wireshark_samples-test.pcapng"
copies="${COPIES:-3720}"
read -r -a sizes <<<"${SIZES:-1073741824 536870912 268435456}"
workers="${WORKERS:-2}"
for tool in editcap mergecap /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed (apt-get install tshark time)" >&2; exit 1; }
done
[ -f "$src" ] || { echo "error: $src not found (set PCAPLAB_CORPUS)" >&2; exit 1; }
dir="${BENCH_DIR:-}"
if [ -z "$dir" ]; then dir="$(mktemp -d)"; trap 'rm -rf "$dir"' EXIT; fi
mkdir -p "$dir"
input="$dir/split-$copies.pcapng"
if [ ! -f "$input" ]; then
  # 120 shifted copies (the capture spans 1,681 s), then shifted copies of those.
  n=$(( copies < 120 ? copies : 120 ))
  parts=()
  for k in $(seq 0 $((n - 1))); do
    editcap -t $((k * 1700)) "$src" "$dir/c$k.pcapng"; parts+=("$dir/c$k.pcapng")
  done
  mergecap -a -w "$dir/block.pcapng" "${parts[@]}"; rm -f "${parts[@]}"
  parts=()
  for k in $(seq 0 $(( (copies + n - 1) / n - 1 ))); do
    editcap -t $((k * n * 1700)) "$dir/block.pcapng" "$dir/b$k.pcapng"; parts+=("$dir/b$k.pcapng")
  done
  mergecap -a -w "$input" "${parts[@]}"; rm -f "${parts[@]}" "$dir/block.pcapng"
fi
cargo build --release -q -p pcaplab-core --example split
bin="${CARGO_TARGET_DIR:-target}/release/examples/split"
echo "input: $input ($(stat -c %s "$input") bytes), $workers workers"
for size in 0 "${sizes[@]}"; do
  /usr/bin/time -f "  peak RSS %M KB, CPU %U s user + %S s sys" "$bin" "$input" "$size" "$workers"
done
