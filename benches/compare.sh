#!/usr/bin/env bash
# pcaplab vs tshark on the same capture, in the same run.
#
#   benches/compare.sh [CAPTURE] [COPIES]
#
# Builds a large input by appending COPIES copies of CAPTURE (default: the corpus'
# pcap-parser__wireshark_samples-test.pcapng, 120 copies ≈ 138 MB) with `mergecap -a`, then times
#   - pcaplab convert --format parquet          (packet rows, app fields included)
#   - pcaplab convert --format parquet,flows    (the same plus the flow table)
#   - pcaplab convert --format csv
#   - tshark -T fields with the oracle's fields (what a tshark user runs to get columns)
#   - tshark -T fields with the app fields (DNS name, TLS SNI, HTTP Host)
#   - tshark -q -z conv,tcp -z conv,udp         (tshark's flow table)
#   - $BASELINE_BIN convert --format parquet    (when set: another pcaplab build, e.g. one
#                                                without app fields, on the same input)
# and prints packets/s, the ratio to tshark, peak RSS (/usr/bin/time -v) and output bytes per
# packet. Needs tshark and mergecap (Debian: apt-get install tshark) and GNU time (apt: time).
# Each tool runs RUNS times (default 3); the median is reported. The pcaplab measured is this
# tree's (`cargo build --release -p pcaplab-cli`), or NEW_BIN. benches/speed.sh measures the
# packet table on three inputs (small TCP, DNS, this one) against tshark and capinfos -c, with
# BASELINE_BIN interleaved.
set -euo pipefail
for var in NEW_BIN BASELINE_BIN; do
  case "${!var:-}" in */*) printf -v "$var" '%s' "$(realpath "${!var}")" ;; esac
done
cd "$(dirname "$0")/.."

corpus="${PCAPLAB_CORPUS:-$(cd .. && pwd)/shared/captures}"
src="${1:-$corpus/pcap-parser__wireshark_samples-test.pcapng}"
copies="${2:-120}"
runs="${RUNS:-3}"
work="${BENCH_DIR:-$(mktemp -d)}"
mkdir -p "$work"
jobs="${JOBS:-$(nproc)}"

for tool in tshark mergecap capinfos /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed (apt-get install tshark time)" >&2; exit 1; }
done
# shellcheck source=benches/lib.sh
. benches/lib.sh
bench_bin

input="$work/bench-input.pcap"
if [ ! -f "$input" ]; then
  args=(); for _ in $(seq "$copies"); do args+=("$src"); done
  mergecap -a -F pcap -w "$input" "${args[@]}"
fi
packets=$(packets_of "$input")
bytes=$(file_bytes "$input")
echo "input: $copies x $(basename "$src") = $bytes bytes, $packets packets; jobs=$jobs; runs=$runs (median)"

# measure OUTPUT_GLOB CMD... : prints "seconds rss_kib out_bytes" of the median run (by time);
# out_bytes is the total size of the files OUTPUT_GLOB (under $work/out) matches.
measure() {
  local out="$1"; shift
  local results=()
  for _ in $(seq "$runs"); do
    rm -rf "$work/out"; mkdir -p "$work/out"
    /usr/bin/time -v -o "$work/time.txt" "$@" >/dev/null 2>"$work/stderr.txt" || {
      echo "error: $* failed:" >&2; cat "$work/stderr.txt" >&2; exit 1; }
    local wall rss size
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$work/time.txt")
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
    size=$(cd "$work/out" && du -cb $out 2>/dev/null | awk 'END {print $1 + 0}')
    results+=("$wall $rss $size")
  done
  printf '%s\n' "${results[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p"
}

fields=(-e frame.number -e frame.time_epoch -e frame.len -e frame.cap_len
  -e eth.src -e eth.dst -e eth.type -e vlan.id -e ip.src -e ip.dst -e ip.proto -e ip.len
  -e ipv6.src -e ipv6.dst -e ipv6.nxt -e tcp.srcport -e tcp.dstport
  -e udp.srcport -e udp.dstport -e tcp.flags)

app_fields=(-e frame.number -e dns.qry.name -e tls.handshake.extensions_server_name -e http.host)

read -r t_s t_rss t_out < <(measure "tshark.tsv" \
  sh -c 'tshark -n -r "$0" -T fields -E header=y -E separator=/t "$@" > "'"$work"'/out/tshark.tsv"' "$input" "${fields[@]}")
read -r ta_s ta_rss ta_out < <(measure "tshark-app.tsv" \
  sh -c 'tshark -n -r "$0" -T fields -E header=y -E separator=/t "$@" > "'"$work"'/out/tshark-app.tsv"' "$input" "${app_fields[@]}")
read -r tc_s tc_rss tc_out < <(measure "tshark-conv.txt" \
  sh -c 'tshark -n -q -r "$0" -z conv,tcp -z conv,udp > "'"$work"'/out/tshark-conv.txt"' "$input")
read -r p_s p_rss p_out < <(measure "packets/*/*.parquet" \
  "$bin" convert "$input" --out "$work/out" --format parquet --jobs "$jobs" --quiet)
read -r f_s f_rss f_out < <(measure "packets/*/*.parquet flows/*/*.parquet" \
  "$bin" convert "$input" --out "$work/out" --format parquet,flows --jobs "$jobs" --quiet)
read -r c_s c_rss c_out < <(measure "packets_csv/*/*.csv" \
  "$bin" convert "$input" --out "$work/out" --format csv --jobs "$jobs" --quiet)
if [ -n "${BASELINE_BIN:-}" ]; then
  read -r b_s b_rss b_out < <(measure "packets/*/*.parquet" \
    "$BASELINE_BIN" convert "$input" --out "$work/out" --format parquet --jobs "$jobs" --quiet)
fi

report() { # name seconds rss out
  awk -v n="$1" -v s="$2" -v r="$3" -v o="$4" -v p="$packets" -v ts="$t_s" 'BEGIN {
    rate = (s > 0) ? p / s : 0; trate = (ts > 0) ? p / ts : 0;
    printf "%-18s %8.2f s %12.0f packets/s %7.1fx tshark %8.1f MiB peak RSS %8.2f bytes/packet out\n",
      n, s, rate, (trate > 0) ? rate / trate : 0, r / 1024, o / p }'
}
report "tshark -T fields" "$t_s" "$t_rss" "$t_out"
report "tshark app fields" "$ta_s" "$ta_rss" "$ta_out"
report "tshark conv" "$tc_s" "$tc_rss" "$tc_out"
report "pcaplab parquet" "$p_s" "$p_rss" "$p_out"
report "pcaplab +flows" "$f_s" "$f_rss" "$f_out"
report "pcaplab csv" "$c_s" "$c_rss" "$c_out"
if [ -n "${BASELINE_BIN:-}" ]; then
  report "baseline parquet" "$b_s" "$b_rss" "$b_out"
  awk -v b="$b_s" -v p="$p_s" -v f="$f_s" 'BEGIN {
    printf "vs baseline parquet: parquet %+.1f%%, parquet + flows %+.1f%% (of the baseline time)\n",
      (p / b - 1) * 100, (f / b - 1) * 100 }'
fi
awk -v p="$p_s" -v f="$f_s" 'BEGIN { printf "cost of flows: %+.1f%% of the parquet time\n", (f / p - 1) * 100 }'
[ -n "${BENCH_DIR:-}" ] || rm -rf "$work"
