#!/usr/bin/env bash
# One capture in ranges (issue 21), each step in its own process as the fan-out runs them: the
# plan, every range (WORKERS processes at a time, default 2), the merge — and the whole
# conversion of the same file in the same run. Prints per range size: ranges, plan time, each
# worker's wall time, CPU time (user + system) and peak RSS (median, max), the workers' CPU
# time in all, the merge's time and peak RSS, the flow parts' size, flows.
#
#   benches/split_steps.sh                 # 3,720 copies (4.3 GB) of the mixed corpus capture
#   COPIES=120 SIZES="16777216 4194304" REPEATS=3 benches/split_steps.sh
#
# The input is benches/split.sh's (benches/lib.sh's split_input), made once in BENCH_DIR
# (default: a temporary directory). The core's `split` example: `split FILE 0` (whole),
# `split plan`, `split range`, `split merge`; each process is measured by GNU time (%M %e %U
# %S). REPEATS (default 1) runs every conversion that many times, interleaved; the plan's, the
# merge's, the whole conversion's and the workers' total are medians over the repeats, a
# worker's over every worker of every repeat. Workers share the cores (and with any other load
# on the machine): a worker's wall time includes waiting for them; its CPU time does not.
# Fails if a split's flows or packets differ from the whole conversion's.
set -euo pipefail
cd "$(dirname "$0")/.."
copies="${COPIES:-3720}"
read -r -a sizes <<<"${SIZES:-1073741824 536870912 268435456 134217728}"
workers="${WORKERS:-2}"
repeats="${REPEATS:-1}"
command -v /usr/bin/time >/dev/null || { echo "error: GNU time is not installed (apt-get install time)" >&2; exit 1; }
# shellcheck source=benches/lib.sh
. benches/lib.sh
bench_dirs split-steps
split_input "$work" "$copies"
cargo build --release -q -p pcaplab-core --example split
bin="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/release/examples/split"
export TMPDIR="$tmp" # the whole conversion's outputs

# GNU time's line: peak RSS KiB, wall seconds, user seconds, system seconds.
fmt=%M,%e,%U,%S
rss='$1' wall='$2' cpu='$3 + $4'
# `measure OUT CMD...`: run CMD, its stdout to OUT, its GNU time line to OUT.time.
measure() {
  local out="$1"; shift
  /usr/bin/time -f "$fmt" -o "$out.time" "$@" >"$out"
}
# `stat_of EXPR FILES...`: "median max" of EXPR ($rss, $wall, $cpu) over the lines of FILES.
stat_of() {
  local expr="$1"; shift
  cat "$@" | awk -F, "{ print $expr }" | sort -g | awk '{ v[NR] = $1 }
    END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f %.2f\n", m, v[NR] }'
}
# The last "N packets" and "N flows" of a step's line.
count_of() { grep -o "[0-9]* $1" "$2" | tail -1 | cut -d' ' -f1; }

echo "input: $input ($(file_bytes "$input") bytes), $workers workers, $repeats repeats"
for r in $(seq 1 "$repeats"); do
  measure "$tmp/whole-$r" "$bin" "$input" 0
  sed 's/^/  /' "$tmp/whole-$r"
  for size in "${sizes[@]}"; do
    d="$tmp/$size-$r"
    measure "$tmp/$size-$r.plan" "$bin" plan "$input" "$size" "$d" "$workers"
    n=$(wc -l <"$d/tasks.jsonl")
    seq 0 $((n - 1)) | xargs -P "$workers" -I{} \
      /usr/bin/time -f "$fmt" -o "$d/range-{}.time" "$bin" range "$input" "$d" {} >/dev/null
    measure "$tmp/$size-$r.merge" "$bin" merge "$d"
    echo "  $size: $(cat "$tmp/$size-$r.plan"); $(cat "$tmp/$size-$r.merge")"
    parts=$(du -cb "$d"/flows-*.part | tail -1 | cut -f1)
    echo "$n $parts" >"$tmp/$size-$r.ranges"
    mkdir -p "$tmp/$size-$r.times" && mv "$d"/range-*.time "$tmp/$size-$r.times/"
    rm -rf "$d"
    for what in packets flows; do
      want=$(count_of "$what" "$tmp/whole-$r"); got=$(count_of "$what" "$tmp/$size-$r.merge")
      if [ "$got" != "$want" ]; then
        echo "error: $size-byte ranges: $got $what, the whole conversion $want" >&2; exit 1
      fi
    done
  done
done

mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
echo
echo "| range size | ranges | plan | worker wall median / max | worker CPU median / max |" \
  "workers' CPU in all | worker peak RSS median / max | merge | merge peak RSS | flow parts | flows |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
read -r wt _ < <(stat_of "$wall" "$tmp"/whole-*.time)
read -r wc _ < <(stat_of "$cpu" "$tmp"/whole-*.time)
read -r wm _ < <(stat_of "$rss" "$tmp"/whole-*.time)
echo "| whole | 1 | | ${wt} s | ${wc} s | ${wc} s | $(mib "$wm") MiB | | | | $(count_of flows "$tmp/whole-1") |"
for size in "${sizes[@]}"; do
  read -r n parts <"$tmp/$size-1.ranges"
  for r in $(seq 1 "$repeats"); do
    cat "$tmp/$size-$r.times"/*.time | awk -F, '{ t += $3 + $4 } END { print "0,0," t ",0" }'
  done >"$tmp/$size.cpu-total"
  read -r pt _ < <(stat_of "$wall" "$tmp/$size"-*.plan.time)
  read -r rt rtmax < <(stat_of "$wall" "$tmp/$size"-*.times/*.time)
  read -r rc rcmax < <(stat_of "$cpu" "$tmp/$size"-*.times/*.time)
  read -r ct _ < <(stat_of "$cpu" "$tmp/$size.cpu-total")
  read -r rm rmmax < <(stat_of "$rss" "$tmp/$size"-*.times/*.time)
  read -r mt _ < <(stat_of "$wall" "$tmp/$size"-*.merge.time)
  read -r mm _ < <(stat_of "$rss" "$tmp/$size"-*.merge.time)
  echo "| $(mib $((size / 1024))) MiB | $n | ${pt} s | ${rt} / ${rtmax} s | ${rc} / ${rcmax} s | ${ct} s" \
    "| $(mib "$rm") / $(mib "$rmmax") MiB | ${mt} s | $(mib "$mm") MiB | $(mib $((parts / 1024))) MiB" \
    "| $(count_of flows "$tmp/$size-1.merge") |"
done
