#!/usr/bin/env bash
# The pipeline of deploy/template.yaml on this machine, without an AWS account: moto's server
# (S3, SQS, DynamoDB, SNS) on a loopback port with the template's resources — the capture bucket
# notifying a queue (with a dead-letter queue) of captures under incoming/, the PacketCaptures
# table, the announcement topic — and `pcaplab watch` consuming the queue in place of the
# Lambda function (the same job: outputs under results/, one item per capture, announcements),
# and `pcaplab serve`, the analyst page, subscribed to the topic.
#
#   deploy/local/up.sh     start, then print how to upload a capture and where to look
#   deploy/local/down.sh   stop exactly what up.sh started
#
# Environment: LAB_PORT (moto's port, default 4599), LAB_STATE (state directory: pids, logs;
# default deploy/local/.state), PCAPLAB_BIN (a pcaplab binary; default: build the release one),
# LAB_PAGE_PORT (the page's port; default: a free one, printed).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
state="${LAB_STATE:-$root/deploy/local/.state}"
port="${LAB_PORT:-4599}"
endpoint="http://127.0.0.1:$port"

if [ -f "$state/pids" ]; then
  echo "error: the lab is already up (state in $state); run deploy/local/down.sh first" >&2
  exit 1
fi
bash "$root/.ci/venv" >&2
py="$root/.venv/bin/python"
if "$py" -c 'import socket, sys; s = socket.socket(); sys.exit(s.connect_ex(("127.0.0.1", int(sys.argv[1]))) != 0)' "$port"; then
  echo "error: port $port is in use; choose another with LAB_PORT=..." >&2
  exit 1
fi
bin="${PCAPLAB_BIN:-}"
if [ -z "$bin" ]; then
  echo "== building pcaplab (release)" >&2
  cargo build --release -q -p pcaplab-cli --manifest-path "$root/Cargo.toml"
  bin="$root/target/release/pcaplab"
fi
mkdir -p "$state"
: >"$state/pids"

# Wait up to 20 s for URL to answer; the last try's error (and ERR) if it never does.
wait_healthy() {
  for _ in $(seq 100); do
    "$py" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$1" 2>/dev/null && return
    sleep 0.2
  done
  "$py" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$1"
}

# Every process started here is recorded (pid and command name) for down.sh.
started() { echo "$1 $2" >>"$state/pids"; }

# If anything below fails, stop what was started.
trap 'echo "error: the lab did not come up; stopping what was started (logs in $state)" >&2; bash "$root/deploy/local/down.sh" >&2' ERR

"$root/.venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$state/moto.log" 2>&1 &
started $! moto
for _ in $(seq 100); do
  "$py" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/moto-api/", timeout=1)' "$endpoint" 2>/dev/null && break
  sleep 0.2
done

export AWS_ENDPOINT_URL="$endpoint" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
  AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
# The template's resources (names fixed here; the template derives them from the stack).
"$py" - >"$state/resources" <<'PY'
import json, boto3
s3, sqs, ddb, sns = (boto3.client(s) for s in ("s3", "sqs", "dynamodb", "sns"))
bucket = "pcaplab-captures"
s3.create_bucket(Bucket=bucket)
def arn(url):
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
dlq = sqs.create_queue(QueueName="pcaplab-dead-letters")["QueueUrl"]
queue = sqs.create_queue(QueueName="pcaplab-captures", Attributes={
    "VisibilityTimeout": "300",
    "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn(dlq), "maxReceiveCount": "5"})})["QueueUrl"]
suffixes = [s + c for s in (".cap", ".pcap", ".pcapng") for c in ("", ".gz", ".zst")]
s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [
    {"QueueArn": arn(queue), "Events": ["s3:ObjectCreated:*"],
     "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "incoming/"}, {"Name": "suffix", "Value": s}]}}}
    for s in suffixes]})
ddb.create_table(TableName="PacketCaptures", BillingMode="PAY_PER_REQUEST",
    KeySchema=[{"AttributeName": "s3Id", "KeyType": "HASH"}],
    AttributeDefinitions=[{"AttributeName": "s3Id", "AttributeType": "S"}])
topic = sns.create_topic(Name="pcaplab")["TopicArn"]
print(f"bucket={bucket}\nqueue={queue}\ndlq={dlq}\ntopic={topic}")
PY
queue=$(sed -n 's/^queue=//p' "$state/resources")
topic=$(sed -n 's/^topic=//p' "$state/resources")

metrics=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" watch --sqs-queue-url "$queue" --out s3://pcaplab-captures/results/ \
  --dynamodb-table PacketCaptures --sns-topic-arn "$topic" \
  --metrics-listen "127.0.0.1:$metrics" --receive-wait 5s >"$state/watch.log" 2>&1 &
started $! pcaplab
echo "metrics=http://127.0.0.1:$metrics" >>"$state/resources"
wait_healthy "http://127.0.0.1:$metrics/healthz"

# The analyst page, reading the table, subscribed to the topic (signatures checked against
# moto's certificates).
page="${LAB_PAGE_PORT:-$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
"$bin" serve --listen "127.0.0.1:$page" --dynamodb-table PacketCaptures >"$state/serve.log" 2>&1 &
started $! pcaplab
echo "page=http://127.0.0.1:$page" >>"$state/resources"
wait_healthy "http://127.0.0.1:$page/healthz"
"$py" -c 'import sys, boto3; boto3.client("sns").subscribe(TopicArn=sys.argv[1], Protocol="http", Endpoint=sys.argv[2])' \
  "$topic" "http://127.0.0.1:$page/sns" >/dev/null
trap - ERR

cat <<MSG
The local lab is up (state and logs in $state).

  export AWS_ENDPOINT_URL=$endpoint AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1

Upload a capture under incoming/ (aws CLI, or the project's venv):
  aws s3 cp captures/lab-web.pcap s3://pcaplab-captures/incoming/
  .venv/bin/python -c "import boto3; boto3.client('s3').upload_file('captures/lab-web.pcap', 'pcaplab-captures', 'incoming/lab-web.pcap')"

Then look at:
  the page         http://127.0.0.1:$page/  (updates when the capture is announced)
  the outputs      s3://pcaplab-captures/results/  (packets/date=…/…parquet, csv/lab-web.csv)
  the item         DynamoDB table PacketCaptures, s3Id = pcaplab-captures/incoming/lab-web.pcap
  the watcher      $state/watch.log, http://127.0.0.1:$metrics/metrics
  the page's log   $state/serve.log
  failures         SQS queue pcaplab-dead-letters (after 5 receives)

Stop it all with deploy/local/down.sh.
MSG
