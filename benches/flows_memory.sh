#!/usr/bin/env bash
# Peak memory of the flow table: is it bounded by the live flows, not by the capture?
#
#   benches/flows_memory.sh [PACKETS...]     (default: 1000000 4000000)
#
# For each size, writes a pcap of PACKETS UDP packets, each the first of a new flow (a new
# source port and address), one every 100 µs (`benches/gen_traffic.py udp-flows PACKETS
# OUT.pcap`): 10,000 new flows per second of capture time, so
# with the 1-minute UDP timeout about 600,000 flows are live at any moment and every flow
# older than that retires. Then times `pcaplab convert --format flows` on it and prints
# flows written, seconds and peak RSS (/usr/bin/time -v). If memory follows the live flows,
# peak RSS stays about the same as the capture grows; if it followed the capture, it would
# grow with PACKETS. Also runs with --udp-timeout 1s (10,000 live flows) for contrast.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || { echo "error: GNU time is not installed (apt-get install time)" >&2; exit 1; }
cargo build --release -q -p pcaplab-cli
bin="$PWD/target/release/pcaplab"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(1000000 4000000)

for n in "${sizes[@]}"; do
  python3 benches/gen_traffic.py udp-flows "$n" "$work/flows-$n.pcap"
  for timeout in 1m 1s; do
    rm -rf "$work/out"
    /usr/bin/time -v -o "$work/time.txt" "$bin" convert "$work/flows-$n.pcap" --out "$work/out" \
      --format flows --udp-timeout "$timeout" --quiet
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$work/time.txt")
    flows=$("${PCAPLAB_PYTHON:-python3}" -c "import pyarrow.parquet as pq, glob; print(sum(pq.read_metadata(f).num_rows for f in glob.glob('$work/out/flows/*/*.parquet')))" 2>/dev/null || echo "?")
    printf "%9d packets, --udp-timeout %-3s %9s flows  %6.2f s  %7.1f MiB peak RSS\n" \
      "$n" "$timeout" "$flows" "$wall" "$(echo "$rss / 1024" | bc -l)"
  done
  rm -f "$work/flows-$n.pcap"
done
