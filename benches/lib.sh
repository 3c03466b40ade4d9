# shellcheck shell=bash
# shellcheck disable=SC2034 # work, tmp and bin are for the scripts that source this
# Shared by the benchmark scripts (sourced from the repository's root):
#
#   bench_dirs NAME   sets work (BENCH_DIR, kept, or a temporary directory removed on exit) for
#                     the inputs, and tmp ($work/NAME-runs, removed on exit) for outputs and
#                     per-run files
#   bench_bin         sets bin to NEW_BIN, or to this tree's release build (built first)

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
