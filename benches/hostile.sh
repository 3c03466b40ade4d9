#!/usr/bin/env bash
# Hostile traffic (issue 16): throughput, CPU and peak memory on floods vs an ordinary capture.
#
#   benches/hostile.sh
#   BASELINE_BIN=/path/to/other/pcaplab EXTRA_ARGS="--flow-memory 16" benches/hostile.sh
#
# Inputs (benches/gen_traffic.py writes the synthetic ones):
#   - ordinary: COPIES (default 120) × the corpus' pcap-parser__wireshark_samples-test.pcapng
#     appended with `mergecap -a` (compare.sh's input: mixed Ethernet traffic)
#   - syn-flood at each of SIZES packets (default "1000000 4000000"): spoofed SYNs from random
#     sources and ports to one address and port, 50,000 packets/s: every packet a new flow
#     (SIZES="1000000 4000000 12000000" shows whether memory follows the capture's length: a
#     912 MB flood, 732 flow row groups)
#   - udp-scan at each of SCAN_SIZES packets (default "1000000"): DNS responses from random
#     resolvers to one victim address and port (amplification), 50,000 packets/s
# Each is converted as the Lambda function and the watcher convert it, the flows and the
# summary item included:
#   pcaplab convert INPUT --out DIR --format parquet,flows,dynamodb-json --jobs JOBS --quiet
# (FORMATS=… replaces that --format list, e.g. FORMATS=flows to time the flow table alone)
# RUNS times (default 3) under /usr/bin/time -v, and per input it prints: packets (capinfos),
# median wall time, packets/s at that median, median CPU seconds (user + sys), median peak RSS,
# the flows written (the flow Parquet's row count, read with the project venv's pyarrow; "?"
# without .venv) and the ratio of its packets/s to the ordinary capture's (of the same build).
#
# BASELINE_BIN=/path/to/other/pcaplab also runs that build on every input in the same run,
# interleaved (baseline, new, baseline, new, …, so drift in the machine's load hits both alike),
# and prints the two side by side with a "new/base" line of ratios (wall, packets/s, CPU, RSS).
# EXTRA_ARGS (or NEW_ARGS) are extra flags for the new build only, e.g. EXTRA_ARGS="--flow-memory
# 16", which the baseline may not know; BASE_ARGS are the baseline's. To give both builds a flag,
# set both. The new build is this tree's: `cargo build --release -p pcaplab-cli`, or NEW_BIN.
#
# BENCH_DIR=DIR keeps the inputs there and reuses them on the next run (otherwise a temporary
# directory, removed at the end). JOBS sets --jobs (default: the number of CPUs). The corpus is
# PCAPLAB_CORPUS (default: ../shared/captures beside the repository). Needs python3, mergecap
# and capinfos (apt-get install tshark) and GNU time (apt-get install time).
set -euo pipefail
# Paths given relative to where the script was started, before moving to the repository.
if [ -n "${BASELINE_BIN:-}" ]; then
  case "$BASELINE_BIN" in */*) BASELINE_BIN="$(realpath "$BASELINE_BIN")" ;; esac
fi
if [ -n "${BENCH_DIR:-}" ]; then BENCH_DIR="$(realpath -m "$BENCH_DIR")"; fi
cd "$(dirname "$0")/.."

corpus="${PCAPLAB_CORPUS:-$(cd .. && pwd)/shared/captures}"
src="$corpus/pcap-parser__wireshark_samples-test.pcapng"
copies="${COPIES:-120}"
read -r -a flood_sizes <<<"${SIZES:-1000000 4000000}"
read -r -a scan_sizes <<<"${SCAN_SIZES:-1000000}"
runs="${RUNS:-3}"
formats="${FORMATS:-parquet,flows,dynamodb-json}"
jobs="${JOBS:-$(nproc)}"
read -r -a new_args <<<"${EXTRA_ARGS:-} ${NEW_ARGS:-}"
read -r -a base_args <<<"${BASE_ARGS:-}"

for tool in python3 mergecap capinfos /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed (apt-get install tshark time)" >&2; exit 1; }
done
[ -f "$src" ] || { echo "error: $src not found (set PCAPLAB_CORPUS)" >&2; exit 1; }
if [ -n "${BASELINE_BIN:-}" ] && ! [ -x "$(command -v "$BASELINE_BIN")" ]; then
  echo "error: BASELINE_BIN=$BASELINE_BIN is not an executable" >&2; exit 1
fi
py=python3
[ -x .venv/bin/python ] && py=.venv/bin/python

# Inputs go to $work, outputs and per-run files to $tmp.
# shellcheck source=benches/lib.sh
. benches/lib.sh
bench_dirs hostile
bench_bin

# The inputs, as "label path" lines; the ordinary capture first (the ratios' reference).
inputs=()
mixed="$work/mixed-$copies.pcap"
if [ ! -f "$mixed" ]; then
  args=(); for _ in $(seq "$copies"); do args+=("$src"); done
  mergecap -a -F pcap -w "$mixed.tmp" "${args[@]}"
  mv "$mixed.tmp" "$mixed"
fi
inputs+=("ordinary-x$copies $mixed")
for n in "${flood_sizes[@]}"; do inputs+=("syn-flood-$n $work/syn-flood-$n.pcap"); done
for n in "${scan_sizes[@]}"; do inputs+=("udp-scan-$n $work/udp-scan-$n.pcap"); done
for entry in "${inputs[@]}"; do
  path="${entry#* }"; name="$(basename "$path" .pcap)"
  case "$name" in
    syn-flood-* | udp-scan-*)
      [ -f "$path" ] || python3 benches/gen_traffic.py "${name%-*}" "${name##*-}" "$path" ;;
  esac
done

# run BUILD INPUT BIN [ARGS...]: one conversion into $tmp/out-BUILD; appends
# "wall_s cpu_s rss_kib" to $tmp/runs-BUILD.txt.
run() {
  local build="$1" input="$2" exe="$3"; shift 3
  local out="$tmp/out-$build"
  rm -rf "$out"; mkdir -p "$out"
  local cmd=("$exe" convert "$input" --out "$out" --format "$formats" --jobs "$jobs" \
    --quiet "$@")
  /usr/bin/time -v -o "$tmp/time.txt" "${cmd[@]}" >/dev/null 2>"$tmp/stderr.txt" || {
    echo "error: ${cmd[*]} failed:" >&2; cat "$tmp/stderr.txt" >&2; exit 1; }
  awk -F': ' '
    /Elapsed \(wall clock\)/ { n = split($2, a, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + a[i]; wall = s }
    /User time \(seconds\)/ { cpu += $2 }
    /System time \(seconds\)/ { cpu += $2 }
    /Maximum resident set size/ { rss = $2 }
    END { print wall, cpu, rss }' "$tmp/time.txt" >>"$tmp/runs-$build.txt"
}

# median COLUMN FILE: the median of that column (the lower middle one when RUNS is even).
median() { sort -g -k"$1,$1" "$2" | awk -v c="$1" -v m="$(( (runs + 1) / 2 ))" 'NR == m { print $c }'; }

flows_in() {
  "$py" -c 'import glob, sys, pyarrow.parquet as pq
print(sum(pq.read_metadata(f).num_rows for f in glob.glob(sys.argv[1] + "/flows/*/*.parquet")))' \
    "$1" 2>/dev/null || echo "?"
}

builds=(new); [ -z "${BASELINE_BIN:-}" ] || builds=(base new)
echo "runs=$runs (median); jobs=$jobs; pcaplab convert INPUT --format $formats"
echo "  new:      $bin ${new_args[*]}"
[ -z "${BASELINE_BIN:-}" ] || echo "  baseline: $BASELINE_BIN ${base_args[*]}"
printf '%-20s %10s %-8s %8s %12s %8s %9s %10s %8s\n' \
  input packets build "wall s" packets/s "CPU s" "RSS MiB" flows "vs ordinary"
declare -A ref_rate
for entry in "${inputs[@]}"; do
  label="${entry%% *}"; path="${entry#* }"
  packets=$(packets_of "$path")
  rm -f "$tmp"/runs-*.txt
  for _ in $(seq "$runs"); do
    [ -z "${BASELINE_BIN:-}" ] || run base "$path" "$BASELINE_BIN" "${base_args[@]}"
    run new "$path" "$bin" "${new_args[@]}"
  done
  declare -A wall=() rate=()
  first=1
  for build in "${builds[@]}"; do
    wall[$build]=$(median 1 "$tmp/runs-$build.txt")
    cpu=$(median 2 "$tmp/runs-$build.txt")
    rss=$(median 3 "$tmp/runs-$build.txt")
    rate[$build]=$(awk -v p="$packets" -v s="${wall[$build]}" 'BEGIN { printf "%.0f", (s > 0 ? p / s : 0) }')
    [ -n "${ref_rate[$build]:-}" ] || ref_rate[$build]=${rate[$build]}
    flows=$(flows_in "$tmp/out-$build")
    name=$build; [ "$build" != base ] || name=baseline
    awk -v l="$label" -v p="$packets" -v b="$name" -v s="${wall[$build]}" -v r="${rate[$build]}" \
      -v c="$cpu" -v m="$rss" -v f="$flows" -v ref="${ref_rate[$build]}" -v first="$first" 'BEGIN {
      printf "%-20s %10s %-8s %8.2f %12d %8.2f %9.1f %10s %7.2fx\n", first ? l : "", first ? p : "",
        b, s, r, c, m / 1024, f, (ref > 0 ? r / ref : 0) }'
    first=0
    printf '%s %s %s\n' "${wall[$build]}" "$cpu" "$rss" >"$tmp/median-$build.txt"
  done
  if [ -n "${BASELINE_BIN:-}" ]; then
    read -r bw bc bm <"$tmp/median-base.txt"
    read -r nw nc nm <"$tmp/median-new.txt"
    awk -v bw="$bw" -v bc="$bc" -v bm="$bm" -v nw="$nw" -v nc="$nc" -v nm="$nm" \
      -v br="${rate[base]}" -v nr="${rate[new]}" 'function q(a, b) { return (b > 0 ? a / b : 0) } BEGIN {
      printf "%-20s %10s %-8s %7.2fx %11.2fx %7.2fx %8.2fx\n", "", "", "new/base",
        q(nw, bw), q(nr, br), q(nc, bc), q(nm, bm) }'
  fi
done
