# shellcheck shell=bash
# shellcheck disable=SC2034 # work, tmp and bin are for the scripts that source this
# Shared by the benchmark scripts (sourced from the repository's root):
#
#   bench_dirs NAME   sets work (BENCH_DIR, kept, or a temporary directory removed on exit) for
#                     the inputs, and tmp ($work/NAME-runs, removed on exit) for outputs and
#                     per-run files
#   bench_bin         sets bin to NEW_BIN, or to this tree's release build (built first)
#   split_input DIR COPIES
#                     sets input to DIR/split-COPIES.pcapng, made once (benches/split.sh,
#                     benches/split_steps.sh): COPIES copies (rounded up to a multiple of 120)
#                     of the corpus' pcap-parser__wireshark_samples-test.pcapng, each shifted in
#                     time past the one before (editcap -t), appended (mergecap -a): timestamps
#                     in file order, as a real long capture has them
#   file_bytes PATH   the size of PATH in bytes, through a symlink (inputs are often linked)
#   packets_of PATH   the packets in capture PATH (capinfos -c: the header walk)

file_bytes() { stat -L -c %s "$1"; }

packets_of() { capinfos -c -M "$1" | awk -F': *' '/Number of packets/ {print $2}'; }

bench_dirs() {
  work="${BENCH_DIR:-$(mktemp -d)}"
  mkdir -p "$work"
  tmp="$work/$1-runs"
  if [ -z "${BENCH_DIR:-}" ]; then trap 'rm -rf "$work"' EXIT; else trap 'rm -rf "$tmp"' EXIT; fi
  rm -rf "$tmp"; mkdir -p "$tmp"
}

bench_bin() {
  if [ -n "${NEW_BIN:-}" ]; then
    bin="$NEW_BIN"
  else
    cargo build --release -q -p pcaplab-cli
    bin="$PWD/target/release/pcaplab"
  fi
}

split_input() {
  local dir="$1" copies="$2" corpus src n k parts
  corpus="${PCAPLAB_CORPUS:-$(cd .. && pwd)/shared/captures}"
  src="$corpus/pcap-parser__wireshark_samples-test.pcapng"
  for tool in editcap mergecap; do
    command -v "$tool" >/dev/null || { echo "error: $tool is not installed (apt-get install tshark)" >&2; exit 1; }
  done
  [ -f "$src" ] || { echo "error: $src not found (set PCAPLAB_CORPUS)" >&2; exit 1; }
  mkdir -p "$dir"
  input="$dir/split-$copies.pcapng"
  [ -f "$input" ] && return
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
  mergecap -a -w "$input.tmp" "${parts[@]}"; rm -f "${parts[@]}" "$dir/block.pcapng"
  mv "$input.tmp" "$input"
}
