#!/usr/bin/env bash
# Peak memory and time of an S3 → S3 conversion of a large capture, against moto's server.
#
#   benches/s3_memory.sh [SIZE_MB]
#   INPUT=CAPTURE benches/s3_memory.sh
#
# Generates a pcap of about SIZE_MB (default 1100) by repeating the records of a corpus
# capture — or, with INPUT=CAPTURE, takes that capture as it is (any format pcaplab reads; it
# is uploaded as big.pcap all the same, pcaplab sniffs the format) — uploads it to a bucket of
# a moto server started on a free loopback port, then runs
#   pcaplab convert s3://bench/big.pcap --out s3://bench/out/ --format parquet,csv,lab-csv \
#     --dynamodb-table PacketCaptures
# under /usr/bin/time -v and prints the peak RSS, the time and what was written. The input is
# streamed and the outputs are multipart uploads, so the peak RSS must not grow with the input.
# Needs the project venv (bash .ci/venv makes it: moto, boto3) and GNU time.
#
# WATCH_CONCURRENCY=N runs `pcaplab watch --concurrency N` instead: the bucket notifies a queue,
# N copies of the capture arrive at once, and the watcher converts them N at a time; it prints
# the watcher's peak RSS and the time until the last item was written.
#
# LAMBDA_MEMORY_MB=512 runs the conversion as a Lambda function of that size would: in a
# cgroup (v1, needs root) with that memory limit and Lambda's CPU share (1 vCPU per 1,769 MB),
# formats parquet,lab-csv (the function's default). With INPUT, e.g. a flood from
# benches/gen_traffic.py:
#   python3 benches/gen_traffic.py syn-flood 4000000 flood-4m.pcap
#   LAMBDA_MEMORY_MB=512 INPUT=flood-4m.pcap benches/s3_memory.sh
# Without root or cgroup v1 (memory and cpu controllers mounted under /sys/fs/cgroup), it stops
# with an error.
set -euo pipefail
# INPUT relative to where the script was started, before moving to the repository.
if [ -n "${INPUT:-}" ]; then
  [ -f "$INPUT" ] || { echo "error: INPUT=$INPUT is not a file" >&2; exit 1; }
  INPUT="$(realpath "$INPUT")"
fi
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
. benches/lib.sh

size_mb="${1:-1100}"
corpus="${PCAPLAB_CORPUS:-$(cd .. && pwd)/shared/captures}"
src="$corpus/pcapplusplus__many-protocols.pcap"
py=.venv/bin/python
if ! [ -x "$py" ] || ! [ -x .venv/bin/moto_server ]; then echo "error: no .venv with moto; run bash .ci/venv once" >&2; exit 1; fi
command -v /usr/bin/time >/dev/null || { echo "error: GNU time is not installed (apt-get install time)" >&2; exit 1; }
work="${BENCH_DIR:-$(mktemp -d)}"
mkdir -p "$work"
moto=; cgroup=
cleanup() {
  if [ -n "$moto" ]; then kill "$moto" 2>/dev/null || true; wait "$moto" 2>/dev/null || true; fi
  if [ -n "$cgroup" ]; then rmdir "$cg/memory/$cgroup" "$cg/cpu/$cgroup" 2>/dev/null || true; fi
  [ -n "${BENCH_DIR:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

cargo build --release -q -p pcaplab-cli
bin="$PWD/target/release/pcaplab"

input="${INPUT:-$work/big.pcap}"
if [ ! -f "$input" ]; then
  "$py" - "$src" "$input" "$size_mb" <<'PY'
import sys
src, dst, size_mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(src, "rb").read()
header, records = data[:24], data[24:]
copies = max(1, size_mb * 2**20 // len(records))
with open(dst, "wb") as f:
    f.write(header)
    for _ in range(copies):
        f.write(records)
PY
fi
bytes=$(file_bytes "$input")

port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
.venv/bin/moto_server -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto=$!
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
  AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
for _ in $(seq 100); do curl -sf "$AWS_ENDPOINT_URL/moto-api/" >/dev/null && break; sleep 0.2; done

"$py" - "$input" <<'PY'
import sys, boto3
s3 = boto3.client("s3")
s3.create_bucket(Bucket="bench")
s3.upload_file(sys.argv[1], "bench", "big.pcap")
boto3.client("dynamodb").create_table(
    TableName="PacketCaptures",
    KeySchema=[{"AttributeName": "s3Id", "KeyType": "HASH"}],
    AttributeDefinitions=[{"AttributeName": "s3Id", "AttributeType": "S"}],
    BillingMode="PAY_PER_REQUEST")
PY

formats=parquet,csv,lab-csv
if [ -n "${WATCH_CONCURRENCY:-}" ]; then
  n="$WATCH_CONCURRENCY"
  queue=$("$py" - "$n" <<'PY'
import sys, boto3
s3, sqs = boto3.client("s3"), boto3.client("sqs")
q = sqs.create_queue(QueueName="bench", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
s3.put_bucket_notification_configuration(Bucket="bench", NotificationConfiguration={"QueueConfigurations": [
    {"QueueArn": arn, "Events": ["s3:ObjectCreated:*"], "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "in/"}]}}}]})
print(q)
PY
)
  metrics=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  /usr/bin/time -v -o "$work/time.txt" "$bin" watch --sqs-queue-url "$queue" --out s3://bench/out/ \
    --format "$formats" --dynamodb-table PacketCaptures --concurrency "$n" --receive-wait 1s \
    --metrics-listen "127.0.0.1:$metrics" 2>"$work/stderr.txt" &
  watcher=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$metrics/healthz" >/dev/null && break; sleep 0.2; done
  started=$(date +%s.%N)
  # Server-side copies: one notification each, all at once.
  "$py" - "$n" <<'PY'
import sys, boto3
s3 = boto3.client("s3")
for i in range(int(sys.argv[1])):
    s3.copy_object(Bucket="bench", Key=f"in/copy{i}.pcap", CopySource={"Bucket": "bench", "Key": "big.pcap"})
PY
  "$py" - "$n" <<'PY'
import sys, time, boto3
ddb = boto3.client("dynamodb")
while ddb.scan(TableName="PacketCaptures", Select="COUNT")["Count"] < int(sys.argv[1]):
    time.sleep(0.2)
PY
  done_at=$(date +%s.%N)
  # SIGTERM to pcaplab itself (GNU time does not forward signals).
  pkill -TERM -P "$watcher"; wait "$watcher" || { cat "$work/stderr.txt" >&2; exit 1; }
  rss_kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
  echo "captures converted: $(grep -c 'capture converted' "$work/stderr.txt")"
  echo "input: $n x $bytes bytes, concurrency $n; peak RSS: $((rss_kib / 1024)) MiB; until the last item: $("$py" -c "print(round($done_at - $started, 2))") s"
  exit 0
fi
wrap=()
if [ -n "${LAMBDA_MEMORY_MB:-}" ]; then
  formats=parquet,lab-csv
  cg=/sys/fs/cgroup
  if ! [ -d "$cg/memory" ] || ! [ -d "$cg/cpu" ]; then
    echo "error: LAMBDA_MEMORY_MB needs cgroup v1 memory and cpu controllers" >&2; exit 1
  fi
  name="pcaplab-bench-$$"
  mkdir -p "$cg/memory/$name" "$cg/cpu/$name"
  cgroup=$name
  echo $((LAMBDA_MEMORY_MB * 1024 * 1024)) >"$cg/memory/$name/memory.limit_in_bytes"
  echo 100000 >"$cg/cpu/$name/cpu.cfs_period_us"
  echo $((100000 * LAMBDA_MEMORY_MB / 1769)) >"$cg/cpu/$name/cpu.cfs_quota_us"
  # shellcheck disable=SC2016 # $$, $0, $1 and $@ are the inner shell's
  wrap=(sh -c 'echo $$ >"$0/memory/$1/cgroup.procs"; echo $$ >"$0/cpu/$1/cgroup.procs"; shift; exec "$@"' "$cg" "$name")
  echo "as a ${LAMBDA_MEMORY_MB} MB Lambda: memory limit ${LAMBDA_MEMORY_MB} MiB, CPU quota $((100 * LAMBDA_MEMORY_MB / 1769))% of one core"
fi
/usr/bin/time -v -o "$work/time.txt" "${wrap[@]}" "$bin" convert s3://bench/big.pcap --out s3://bench/out/ \
  --format "$formats" --dynamodb-table PacketCaptures --quiet 2>"$work/stderr.txt" || {
  cat "$work/stderr.txt" >&2; exit 1; }
if [ -n "${LAMBDA_MEMORY_MB:-}" ]; then
  echo "cgroup peak memory: $(( $(cat "$cg/memory/$name/memory.max_usage_in_bytes") / 1048576 )) MiB; OOM kills: $(awk '/oom_kill /{print $2}' "$cg/memory/$name/memory.oom_control" 2>/dev/null || echo n/a)"
fi
rss_kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time.txt")
cat "$work/stderr.txt"
"$py" - <<PY
import boto3
s3 = boto3.client("s3")
for o in s3.list_objects_v2(Bucket="bench", Prefix="out/")["Contents"]:
    print(f"  {o['Size']:>12}  s3://bench/{o['Key']}")
item = boto3.client("dynamodb").get_item(TableName="PacketCaptures", Key={"s3Id": {"S": "bench/big.pcap"}})["Item"]
print(f"  item: packets={item['packets']['N']} status={item['status']['S']}")
PY
echo "input: $bytes bytes; peak RSS: $((rss_kib / 1024)) MiB; wall: $secs"
