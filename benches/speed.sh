#!/usr/bin/env bash
# Speed (issue 17): pcaplab against tshark and against the header walk, on three inputs, in one run.
#
#   benches/speed.sh
#   NEW_BIN=/path/to/pcaplab BASELINE_BIN=/path/to/older/pcaplab RUNS=5 benches/speed.sh
#   INPUTS=dns,mixed TSHARK=0 benches/speed.sh
#
# Inputs (INPUTS, comma-separated, default all three; benches/gen_traffic.py writes the synthetic
# ones):
#   - small-tcp: SMALL_TCP_PACKETS (default 1,650,000) packets of many short TCP connections
#     (gen_traffic.py's tcp-small: handshake, a few echo-like exchanges of tens of bytes, FIN/ACK
#     close), where every packet is small and its headers are most of the work
#   - dns: DNS_PACKETS (default 1,300,000) packets of DNS over UDP (gen_traffic.py's dns: queries
#     from 400 clients to 4 resolvers, each answered; A/AAAA/CNAME/MX/TXT, compressed names),
#     where every packet's DNS message is parsed for the app fields
#   - mixed: COPIES (default 120) × the corpus' pcap-parser__wireshark_samples-test.pcapng
#     appended with `mergecap -a` (compare.sh's and hostile.sh's input: mixed Ethernet traffic)
# On each, RUNS times (default 3), interleaved round by round so that drift in the machine's
# load hits every tool alike (baseline, new, tshark, capinfos; baseline, new, …):
#   - new:      NEW_BIN convert INPUT --out DIR --format parquet --jobs JOBS --quiet
#               (the packet table; the app fields are always on). Without NEW_BIN, this tree's
#               `cargo build --release -p pcaplab-cli`.
#   - baseline: BASELINE_BIN, the same command, when set (before/after in one run)
#   - tshark:   tshark -n -r INPUT -T fields with the oracle's fields (as compare.sh runs it),
#               to a TSV file; TSHARK=0 leaves it out (it takes minutes on these inputs)
#   - capinfos: capinfos -c -M INPUT, the header walk (wiretap reads every record; one thread):
#               what reading the capture costs before any decoding
# and prints per tool the medians (each column's own, over the RUNS runs) of wall seconds and
# CPU seconds (user + sys, /usr/bin/time -v), packets/s at the median wall time, peak RSS, output
# bytes per packet (the Parquet files; tshark's TSV) and packets/s relative to capinfos and to
# tshark; with BASELINE_BIN a "new/base" line of ratios (wall, packets/s, CPU, RSS, output).
#
# BENCH_DIR=DIR keeps the inputs there and reuses them on the next run (otherwise a temporary
# directory, removed at the end); the time to generate each input is printed when it is made.
# JOBS sets --jobs (default: the number of CPUs). The corpus is PCAPLAB_CORPUS (default:
# ../shared/captures beside the repository). Needs python3, tshark, mergecap and capinfos
# (apt-get install tshark) and GNU time (apt-get install time). Any failed command stops the run.
# shellcheck disable=SC2016 # the sh -c scripts' $0, $1 and $@ are the inner shell's
set -euo pipefail
# Paths given relative to where the script was started, before moving to the repository.
for var in NEW_BIN BASELINE_BIN; do
  case "${!var:-}" in */*) printf -v "$var" '%s' "$(realpath "${!var}")" ;; esac
done
if [ -n "${BENCH_DIR:-}" ]; then BENCH_DIR="$(realpath -m "$BENCH_DIR")"; fi
cd "$(dirname "$0")/.."

corpus="${PCAPLAB_CORPUS:-$(cd .. && pwd)/shared/captures}"
src="$corpus/pcap-parser__wireshark_samples-test.pcapng"
copies="${COPIES:-120}"
small_tcp_packets="${SMALL_TCP_PACKETS:-1650000}"
dns_packets="${DNS_PACKETS:-1300000}"
IFS=, read -r -a input_names <<<"${INPUTS:-small-tcp,dns,mixed}"
runs="${RUNS:-3}"
jobs="${JOBS:-$(nproc)}"
with_tshark="${TSHARK:-1}"

for tool in python3 tshark mergecap capinfos /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed (apt-get install tshark time)" >&2; exit 1; }
done
for name in "${input_names[@]}"; do
  case "$name" in
    small-tcp | dns) ;;
    mixed) [ -f "$src" ] || { echo "error: $src not found (set PCAPLAB_CORPUS)" >&2; exit 1; } ;;
    *) echo "error: INPUTS: unknown input '$name' (small-tcp, dns, mixed)" >&2; exit 1 ;;
  esac
done
for var in NEW_BIN BASELINE_BIN; do
  if [ -n "${!var:-}" ] && ! [ -x "$(command -v "${!var}")" ]; then
    echo "error: $var=${!var} is not an executable" >&2; exit 1
  fi
done
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "error: RUNS=$runs is not a positive number" >&2; exit 1; }

# Inputs go to $work, outputs and per-run files to $tmp.
# shellcheck source=benches/lib.sh
. benches/lib.sh
bench_dirs speed
bench_bin

# make_input NAME: sets $input to that input's path, making it first when it is missing (into
# PATH.tmp, renamed when complete) and saying how long that took.
make_input() {
  local gen e u s
  case "$1" in
    small-tcp) input="$work/small-tcp-$small_tcp_packets.pcap"
      gen=(python3 benches/gen_traffic.py tcp-small "$small_tcp_packets" "$input") ;;
    dns) input="$work/dns-$dns_packets.pcap"
      gen=(python3 benches/gen_traffic.py dns "$dns_packets" "$input") ;;
    mixed) input="$work/mixed-$copies.pcap"
      local args=(); for _ in $(seq "$copies"); do args+=("$src"); done
      gen=(sh -c 'mergecap -a -F pcap -w "$0.tmp" "$@" && mv "$0.tmp" "$0"' "$input" "${args[@]}") ;;
  esac
  [ ! -f "$input" ] || return 0
  /usr/bin/time -f '%e %U %S' -o "$tmp/gen-time.txt" "${gen[@]}" || {
    echo "error: making the $1 input failed: ${gen[*]:0:5}" >&2; exit 1; }
  read -r e u s <"$tmp/gen-time.txt"
  echo "made the $1 input, $(basename "$input"), in $e s ($(awk -v u="$u" -v s="$s" 'BEGIN { print u + s }') s CPU)"
}

fields=(-e frame.number -e frame.time_epoch -e frame.len -e frame.cap_len
  -e eth.src -e eth.dst -e eth.type -e vlan.id -e ip.src -e ip.dst -e ip.proto -e ip.len
  -e ipv6.src -e ipv6.dst -e ipv6.nxt -e tcp.srcport -e tcp.dstport
  -e udp.srcport -e udp.dstport -e tcp.flags)

# run TOOL INPUT: one run of that tool into $tmp/out-TOOL; appends
# "wall_s cpu_s rss_kib out_bytes" to $tmp/runs-TOOL.txt.
run() {
  local tool="$1" input="$2" out="$tmp/out-$1" cmd
  rm -rf "$out"; mkdir -p "$out"
  case "$tool" in
    new) cmd=("$bin" convert "$input" --out "$out" --format parquet --jobs "$jobs" --quiet) ;;
    base) cmd=("$BASELINE_BIN" convert "$input" --out "$out" --format parquet --jobs "$jobs" --quiet) ;;
    tshark) cmd=(sh -c 'out="$1"; shift; exec tshark -n -r "$@" > "$out"' sh "$out/tshark.tsv"
      "$input" -T fields -E header=y -E separator=/t "${fields[@]}") ;;
    capinfos) cmd=(sh -c 'exec capinfos -c -M "$2" > "$1"' sh "$out/capinfos.txt" "$input") ;;
  esac
  local start="$EPOCHREALTIME" end size
  /usr/bin/time -v -o "$tmp/time.txt" "${cmd[@]}" >/dev/null 2>"$tmp/stderr.txt" || {
    echo "error: $tool failed: ${cmd[*]}" >&2; cat "$tmp/stderr.txt" >&2; exit 1; }
  end="$EPOCHREALTIME"
  size=$(find "$out" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
  [ "$size" -gt 0 ] || { echo "error: $tool wrote nothing: ${cmd[*]}" >&2; exit 1; }
  # Wall time from bash's clock (µs; /usr/bin/time's is in 10 ms steps), CPU and RSS from time.
  awk -F': ' -v size="$size" -v wall="$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" '
    /User time \(seconds\)/ { cpu += $2 }
    /System time \(seconds\)/ { cpu += $2 }
    /Maximum resident set size/ { rss = $2 }
    END { print wall, cpu, rss, size }' "$tmp/time.txt" >>"$tmp/runs-$tool.txt"
}

# median COLUMN FILE: the median of that column (the lower middle one when RUNS is even).
median() { sort -g -k"$1,$1" "$2" | awk -v c="$1" -v m="$(( (runs + 1) / 2 ))" 'NR == m { print $c }'; }

tools=(); [ -z "${BASELINE_BIN:-}" ] || tools+=(base)
tools+=(new)
[ "$with_tshark" = 0 ] || tools+=(tshark)
tools+=(capinfos)
declare -A label=([base]="pcaplab baseline" [new]="pcaplab new" [tshark]="tshark -T fields"
  [capinfos]="capinfos -c")

paths=()
for name in "${input_names[@]}"; do make_input "$name"; paths+=("$input"); done

echo "runs=$runs (medians); jobs=$jobs; pcaplab convert INPUT --format parquet --jobs $jobs"
echo "  new:      $bin"
[ -z "${BASELINE_BIN:-}" ] || echo "  baseline: $BASELINE_BIN"
for i in "${!input_names[@]}"; do
  name="${input_names[$i]}"; path="${paths[$i]}"
  packets=$(packets_of "$path")
  bytes=$(file_bytes "$path")
  echo
  awk -v n="$name" -v f="$(basename "$path")" -v p="$packets" -v b="$bytes" 'BEGIN {
    printf "%s: %s, %d packets, %.1f MB (%.1f bytes/packet)\n", n, f, p, b / 1e6, b / p }'
  printf '%-18s %8s %8s %12s %9s %10s %11s %9s\n' \
    tool "wall s" "CPU s" packets/s "RSS MiB" "out B/pkt" "vs capinfos" "vs tshark"
  rm -f "$tmp"/runs-*.txt
  for _ in $(seq "$runs"); do
    for tool in "${tools[@]}"; do run "$tool" "$path"; done
  done
  declare -A wall=() cpu=() rss=() out=() rate=()
  for tool in "${tools[@]}"; do
    wall[$tool]=$(median 1 "$tmp/runs-$tool.txt")
    cpu[$tool]=$(median 2 "$tmp/runs-$tool.txt")
    rss[$tool]=$(median 3 "$tmp/runs-$tool.txt")
    out[$tool]=$(median 4 "$tmp/runs-$tool.txt")
    rate[$tool]=$(awk -v p="$packets" -v s="${wall[$tool]}" 'BEGIN { printf "%.0f", (s > 0 ? p / s : 0) }')
  done
  for tool in "${tools[@]}"; do
    awk -v l="${label[$tool]}" -v p="$packets" -v s="${wall[$tool]}" -v c="${cpu[$tool]}" \
      -v r="${rate[$tool]}" -v m="${rss[$tool]}" -v o="${out[$tool]}" -v t="$tool" \
      -v ci="${rate[capinfos]}" -v ts="${rate[tshark]:-0}" '
      function x(a, b) { return (b > 0 ? sprintf("%.2fx", a / b) : "-") }
      BEGIN {
        printf "%-18s %8.3f %8.2f %12d %9.1f %10s %11s %9s\n", l, s, c, r, m / 1024,
          (t == "capinfos" ? "-" : sprintf("%.2f", o / p)), x(r, ci), x(r, ts) }'
  done
  if [ -n "${BASELINE_BIN:-}" ]; then
    awk -v bw="${wall[base]}" -v nw="${wall[new]}" -v br="${rate[base]}" -v nr="${rate[new]}" \
      -v bc="${cpu[base]}" -v nc="${cpu[new]}" -v bm="${rss[base]}" -v nm="${rss[new]}" \
      -v bo="${out[base]}" -v no="${out[new]}" '
      function q(a, b) { return (b > 0 ? sprintf("%.3fx", a / b) : "-") }
      BEGIN { printf "%-18s %8s %8s %12s %9s %10s\n", "new/baseline", q(nw, bw), q(nc, bc),
        q(nr, br), q(nm, bm), q(no, bo) }'
  fi
done
