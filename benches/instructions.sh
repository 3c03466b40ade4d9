#!/usr/bin/env bash
# Instructions executed by a conversion, before and after a change: a deterministic measure of
# the per-packet path's cost where wall and CPU times are noisy (a shared 2-core machine, where
# the same build's CPU time wanders by 20% from one hour to the next).
#
#   NEW_BIN=/path/to/pcaplab BASELINE_BIN=/path/to/older/pcaplab benches/instructions.sh INPUT...
#   PACKETS=100000 FORMAT=parquet,flows TOP=20 NEW_BIN=… BASELINE_BIN=… benches/instructions.sh INPUT
#
# For each INPUT (any capture; e.g. speed.sh's inputs in its BENCH_DIR), its first PACKETS
# packets (default 300,000; editcap -r) are converted by each build under valgrind's cachegrind
# without cache simulation (`NEW_BIN convert PART --format FORMAT --quiet`, FORMAT default
# parquet), and the script prints each build's instruction count, the new/baseline ratio and the
# TOP functions (default 15) whose counts changed most (cg_diff, cg_annotate). Instructions are
# not time: a change can save instructions and stall on memory instead (measure time too, with
# speed.sh); but a change of a few percent shows here in one run where timings need dozens.
# Without BASELINE_BIN only NEW_BIN is counted; without NEW_BIN, this tree's release build (built
# first). BENCH_DIR=DIR keeps the cut inputs and the cachegrind files there. Needs valgrind
# (apt-get install valgrind) and editcap (apt-get install tshark). Any failed command stops the
# run. About 20× the conversion's own time per build.
set -euo pipefail
for var in NEW_BIN BASELINE_BIN; do
  case "${!var:-}" in */*) printf -v "$var" '%s' "$(realpath "${!var}")" ;; esac
done
if [ -n "${BENCH_DIR:-}" ]; then BENCH_DIR="$(realpath -m "$BENCH_DIR")"; fi
inputs=()
for f in "$@"; do inputs+=("$(realpath "$f")"); done
[ ${#inputs[@]} -gt 0 ] || { echo "usage: NEW_BIN=… BASELINE_BIN=… $0 INPUT..." >&2; exit 2; }
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
. benches/lib.sh

for tool in valgrind cg_diff cg_annotate editcap; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed (apt-get install valgrind tshark)" >&2; exit 1; }
done
packets="${PACKETS:-300000}"
format="${FORMAT:-parquet}"
top="${TOP:-15}"
bench_dirs instructions
bench_bin

# Instructions of BIN converting PART; the cachegrind file is OUT.
count() {
  local bin="$1" part="$2" out="$3"
  rm -rf "$tmp/out"
  valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file="$out" \
    "$bin" convert "$part" --out "$tmp/out" --format "$format" --quiet 2>"$tmp/valgrind.log" \
    || { cat "$tmp/valgrind.log" >&2; exit 1; }
  awk '/^summary:/ {print $2}' "$out"
}

echo "first $packets packets of each input; pcaplab convert PART --format $format, under cachegrind"
echo "  new:      $bin"
[ -n "${BASELINE_BIN:-}" ] && echo "  baseline: $BASELINE_BIN"
for input in "${inputs[@]}"; do
  name="$(basename "${input%.*}")"
  part="$work/$name-first-$packets.pcapng"
  [ -f "$part" ] || editcap -r "$input" "$part" "1-$packets"
  echo
  echo "$name: $(packets_of "$part") packets"
  new=$(count "$bin" "$part" "$work/$name.new.cg")
  printf '  %-10s %15s instructions  %8.0f per packet\n' new "$new" "$(bc -l <<<"$new / $(packets_of "$part")")"
  if [ -n "${BASELINE_BIN:-}" ]; then
    base=$(count "$BASELINE_BIN" "$part" "$work/$name.base.cg")
    printf '  %-10s %15s instructions  %8.0f per packet\n' baseline "$base" "$(bc -l <<<"$base / $(packets_of "$part")")"
    printf '  new/baseline %.4fx\n' "$(bc -l <<<"$new / $base")"
    echo "  functions whose instructions changed most (new - baseline):"
    cg_diff "$work/$name.base.cg" "$work/$name.new.cg" >"$work/$name.diff.cg"
    cg_annotate --auto=no "$work/$name.diff.cg" >"$work/$name.diff.txt"
    # From a file, not a pipe: stopping early would end cg_annotate with SIGPIPE.
    awk -v top="$top" '/file:function/ {on = 1; next}
      on && /^ *-?[0-9,]+ / {print "    " substr($0, 1, 156); if (++n >= top) exit}' "$work/$name.diff.txt"
  fi
done
