#!/usr/bin/env bash
# Build the Lambda function's zip for deploy/template.yaml:
#   target/lambda/pcaplab-lambda/bootstrap.zip  (arm64, provided.al2023)
# with cargo-lambda and zig as the cross linker, both from the project's venv (.ci/venv), and
# the aarch64 target added through rustup. Prints the zip's size and the build time.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash .ci/venv >&2
# cargo-lambda finds zig through `python3 -m ziglang`: the venv's python3 has it.
export PATH="$root/.venv/bin:$PATH"
rustup target add aarch64-unknown-linux-gnu >/dev/null
started=$(date +%s)
# Without the line tables of the release profile: a zip a quarter the size (faster cold starts);
# symbol names stay, so a backtrace still names its functions.
export CARGO_PROFILE_RELEASE_STRIP=debuginfo
cargo lambda build --release --arm64 --output-format zip -p pcaplab-lambda
zip="target/lambda/pcaplab-lambda/bootstrap.zip"
test -s "$zip"
echo "== $zip: $(stat -c %s "$zip") bytes, built in $(( $(date +%s) - started )) s"
