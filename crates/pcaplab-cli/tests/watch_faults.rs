//! `pcaplab watch` (SQS mode, the real binary in a child process) with the infrastructure
//! failing under it: the testkit's fault-injecting proxy sits between the watcher and moto
//! (S3 notifications → SQS, S3, DynamoDB, SNS), while the test's own scripts talk to moto
//! directly.
//!
//! Whatever fails, the effect is exactly once: one item per capture, exactly the output keys a
//! fault-free run writes (`--format parquet`: one `packets/date=…/<id>.<etag>.parquet` each,
//! its rows read back), the queue ends empty (nothing visible, nothing in flight, nothing in
//! the dead-letter queue), and the logs and metrics say what went wrong:
//!
//! 1. While a capture is held: its visibility extensions fail (500s, then throttling for as long
//!    as the message keeps its receipt handle), so the message comes back while the capture is
//!    still converted — not converted twice, deleted with its new handle; the delete itself
//!    fails twice (retried).
//! 2. Deletes: one that took effect but whose answer was lost; one failing for a while, so the
//!    message comes back and is converted again (to the same keys and item) before it is
//!    deleted.
//! 3. Transient S3 and DynamoDB faults while converting (GetObject 503 SlowDown twice, a
//!    PutObject 500, PutItem throttled twice): each capture converted once, its message deleted.
//! 4. `sns:Publish` failing for a while (`--sns-topic-arn`): the message is left and comes back;
//!    once SNS works, the redelivery converts and announces — exactly one announcement. The
//!    failure is logged as retryable, naming the topic.
//! 5. `sqs:ReceiveMessage` throttled across several receives: the watcher backs off, is
//!    unhealthy on `/healthz` for a while, keeps going and then processes the waiting messages.
//! 6. Poll mode: claims throttled, and a claim whose answer was lost (its retry finds the lease
//!    its own): each capture converted once, no lease left.
//! 7. Poll mode with a slow `sns:Publish`: a lease renewal falls between the item's write (which
//!    ends the lease) and the announcement — the work finishes and announces, no lease "lost".
//!
//! Needs `$PCAPLAB_PYTHON` (boto3, moto[server], pyarrow); without it each test prints a loud
//! SKIPPED line, or fails under `$PCAPLAB_REQUIRE_ALL` (as in CI).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use pcaplab_testkit::{Fault, FaultProxy, Moto, Rule, fields, http_get, python, udp_capture};
use serde_json::Value;

mod watcher;
use watcher::{TABLE, Watcher, dataset_rows, depth, setup};

const CMV: &str = "sqs:ChangeMessageVisibility";
const DELETE: &str = "sqs:DeleteMessage";
/// The message S3 sends when a bucket's notification is configured (`s3:TestEvent`): it names
/// no object, and the watcher deletes it.
const TEST_EVENT: f64 = 1.0;
/// The UTC date of a generated capture's first packet (`udp_capture` starts at 1.7e9 s).
const UDP_DATE: &str = "2023-11-14";

/// moto, the proxy in front of it, the buckets, table, queues and topic, and a directory.
struct Lab {
    moto: Moto,
    proxy: FaultProxy,
    dir: tempfile::TempDir,
    queue: String,
    topic: String,
}

impl Lab {
    /// `None` (after a SKIPPED line) without Python. The dead-letter queue takes a message
    /// after `max_receives` receives.
    fn start(max_receives: u32) -> Option<Lab> {
        let py = python()?;
        let moto = Moto::start(&py);
        let proxy = FaultProxy::start(&moto.endpoint());
        let (queue, topic) = setup(&moto, max_receives);
        Some(Lab {
            moto,
            proxy,
            dir: tempfile::tempdir().expect("tempdir"),
            queue,
            topic,
        })
    }

    /// Generate `name` (`packets` UDP packets) and upload it as `in/<name>`.
    fn upload(&self, name: &str, packets: u32) {
        let path = self.dir.path().join(name);
        udp_capture(&path, packets);
        self.moto
            .upload("captures", &[(path, format!("in/{name}"))]);
    }

    /// [`Lab::starting`], once it has deleted S3's test event (so that the faults the test
    /// injects next meet the captures' messages).
    fn watcher(&self, name: &str, args: &[&str]) -> Watcher {
        let w = self.starting(name, args);
        wait_until_or(
            "the test event deleted",
            Duration::from_secs(30),
            &w,
            || w.messages("deleted") >= TEST_EVENT,
        );
        w
    }

    /// `pcaplab watch` through the proxy: the queue, 1 s long polls, and `args`.
    fn starting(&self, name: &str, args: &[&str]) -> Watcher {
        let queue = ["--sqs-queue-url", &self.queue, "--receive-wait", "1s"];
        self.launch(name, &queue, args)
    }

    /// `pcaplab watch` in poll mode through the proxy: `s3://captures/in/` every second, 3 s
    /// leases, and `args`.
    fn poller(&self, name: &str, args: &[&str]) -> Watcher {
        let poll = [
            "--poll",
            "s3://captures/in/",
            "--interval",
            "1s",
            "--lease",
            "3s",
        ];
        self.launch(name, &poll, args)
    }

    /// `pcaplab watch` through the proxy with the `source` arguments, `s3://results/`, the
    /// table, Parquet only, and `args`.
    fn launch(&self, name: &str, source: &[&str], args: &[&str]) -> Watcher {
        let mut all = source.to_vec();
        all.extend_from_slice(&[
            "--out",
            "s3://results/",
            "--dynamodb-table",
            TABLE,
            "--format",
            "parquet",
        ]);
        all.extend_from_slice(args);
        Watcher::start(
            &self.moto,
            &self.proxy.endpoint(),
            self.dir.path(),
            name,
            &all,
        )
    }

    /// No item holds a lease any more.
    fn assert_no_lease(&self) {
        let leases = self.moto.py(
            "for it in items():\n    emit('lease', it['s3Id']['S'], 'lease_owner' in it)",
            &[],
        );
        assert!(
            fields(&leases, "lease").iter().all(|f| f[1] == "False"),
            "{leases}"
        );
    }

    /// `(visible, in flight, in the dead-letter queue)`.
    fn depth(&self) -> (u64, u64, u64) {
        depth(&self.moto)
    }

    /// Wait until every capture `in/<name>` has a finished item, the queue and its
    /// dead-letter queue are empty, the watcher holds nothing and has counted the messages
    /// (S3's test event's and one per capture) deleted.
    fn wait_done(&self, w: &Watcher, names: &[&str], timeout: Duration) {
        let ids: BTreeSet<String> = names.iter().map(|n| format!("captures/in/{n}")).collect();
        let deadline = Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(Instant::now());
        let finished = || {
            let items = self.moto.items();
            items.keys().cloned().collect::<BTreeSet<_>>() == ids
                && items.values().all(|i| i.status == "ok")
        };
        wait_until_or("an ok item for every capture", left(), w, finished);
        wait_until_or("an empty queue", left(), w, || self.depth() == (0, 0, 0));
        wait_until_or("nothing in flight", left(), w, || {
            w.metrics()["pcaplab_watch_in_flight"] == 0.0
        });
        // A delete's answer can come after the queue is empty (a lost answer, retried).
        wait_until_or("the messages deleted", left(), w, || {
            w.messages("deleted") >= TEST_EVENT + names.len() as f64
        });
    }

    /// The keys a fault-free run writes for the generated captures `in/<name>`: one Parquet
    /// file each, named by the capture's id and its object's ETag.
    fn expected_keys(&self, names: &[&str]) -> BTreeSet<String> {
        let keys: Vec<String> = names.iter().map(|n| format!("in/{n}")).collect();
        let args: Vec<&str> = keys.iter().map(String::as_str).collect();
        let out = self.moto.py(
            r#"for k in sys.argv[1:]:
    emit("etag", k, s3.head_object(Bucket="captures", Key=k)["ETag"].strip('"'))"#,
            &args,
        );
        fields(&out, "etag")
            .into_iter()
            .map(|f| {
                let id = format!("captures/{}", f[0]).replace('/', "%2F");
                format!("packets/date={UDP_DATE}/{id}.{}.parquet", f[1])
            })
            .collect()
    }

    /// The effect of a fault-free run, whatever happened: one `ok` item per capture with its
    /// packets and its one Parquet output, exactly the expected keys in `results`, and the
    /// dataset's rows per capture.
    fn assert_effect(&self, captures: &[(&str, u32)]) {
        let names: Vec<&str> = captures.iter().map(|(n, _)| *n).collect();
        let expected = self.expected_keys(&names);
        assert_eq!(self.moto.keys("results", ""), expected, "the output keys");
        let items = self.moto.items();
        assert_eq!(items.len(), captures.len(), "{items:?}");
        for (name, packets) in captures {
            let id = format!("captures/in/{name}");
            let item = &items[&id];
            assert_eq!(item.status, "ok", "{id}: {item:?}");
            assert_eq!(item.packets, Some(u64::from(*packets)), "{id}");
            assert!(
                item.first_ts
                    .as_deref()
                    .is_some_and(|t| t.starts_with(UDP_DATE)),
                "{id}: {item:?}"
            );
            assert_eq!(item.outputs.len(), 1, "{id}: {item:?}");
            let key = item.outputs["parquet"]
                .strip_prefix("s3://results/")
                .expect("an output in results");
            assert!(expected.contains(key), "{id}: {key} not in {expected:?}");
        }
        let rows = dataset_rows(&self.moto);
        let want: BTreeMap<String, u64> = captures
            .iter()
            .map(|(n, p)| (format!("captures/in/{n}"), u64::from(*p)))
            .collect();
        assert_eq!(rows, want, "the dataset's rows per capture");
    }

    /// The announcements delivered so far (drained): their JSON messages.
    fn announcements(&self) -> Vec<Value> {
        self.moto
            .announcements("announcements")
            .into_iter()
            .map(|(m, _)| serde_json::from_str(&m).expect("message JSON"))
            .collect()
    }
}

/// [`wait_until`], with the watcher's log in the failure.
fn wait_until_or(what: &str, timeout: Duration, w: &Watcher, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; the watcher's log:\n{}",
            w.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Watcher {
    /// The receive counts of the messages whose capture `in/<name>` was converted, one per
    /// `capture converted` line.
    fn conversions(&self, name: &str) -> Vec<u64> {
        let url = format!("s3://captures/in/{name}");
        self.logs()
            .iter()
            .filter(|l| l["message"] == "capture converted" && l["object"] == url.as_str())
            .map(|l| {
                l["span"]["receives"]
                    .as_str()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0)
            })
            .collect()
    }
}

/// A piece of the receipt handle of the latest successful `ChangeMessageVisibility` the
/// proxy saw, if it came after `after` requests (the request's JSON body, as much of it as
/// the ledger keeps): enough to match that handle's requests and no other's.
fn extended_handle(proxy: &FaultProxy, after: usize) -> Option<String> {
    let seen = proxy.seen();
    let s = seen
        .iter()
        .skip(after)
        .rev()
        .find(|s| s.op == CMV && s.fault.is_none() && s.status == Some(200))?;
    let (_, rest) = s
        .subject
        .split_once("\"ReceiptHandle\":\"")
        .unwrap_or_else(|| panic!("no receipt handle in {}", s.subject));
    let handle: String = rest.chars().take_while(|c| *c != '"').take(40).collect();
    assert!(
        handle.len() >= 20,
        "too little of the handle in {}",
        s.subject
    );
    Some(handle)
}

/// 1. A capture in hand for several seconds, with a 3 s visibility timeout (an extension every
///    second). First two extensions fail once each (a 500, a throttle: the SDK's retry absorbs
///    them in time). Then every extension with the message's receipt handle is throttled, so
///    its visibility lapses and it comes back — to this watcher's own long poll, while the
///    capture is still converted. The watcher warns, does not convert the capture a second
///    time, extends with the new handle and deletes with it (through two 500s on the delete).
#[test]
fn failing_visibility_extensions_let_the_message_back_but_the_capture_is_converted_once() {
    // The message comes back on purpose: no dead-letter queue after 2 receives.
    let Some(lab) = Lab::start(10) else { return };
    const BIG: u32 = 500_000;
    let p = &lab.proxy;
    let mut w = lab.watcher(
        "extensions",
        &["--visibility-timeout", "3s", "--concurrency", "2"],
    );
    let start = p.seen().len();
    p.inject(Rule::new(CMV, Fault::InternalError).times(1));
    p.inject(Rule::new(CMV, Fault::Throttle).after(2).times(1));
    // The item's write held back: the capture stays in flight through the faults below however
    // fast this machine converts it. A fast conversion writes the item within a second of the
    // first extension; from there the transient faults, the lapse of the visibility (3 s after
    // the last extension that went through), the message's return to a 1 s long poll and an
    // extension with its new handle (once a second) take up to about 8 s: 6 s was seen to end
    // the capture between the return and that extension.
    p.inject(Rule::new("dynamodb:PutItem", Fault::Delay(Duration::from_secs(12))).times(1));
    p.inject(Rule::new(DELETE, Fault::InternalError).times(2));
    lab.upload("big.pcap", BIG);

    wait_until_or("the capture in flight", Duration::from_secs(60), &w, || {
        w.metric("pcaplab_watch_in_flight") >= 1.0
    });
    // Both transient faults, then an extension that went through: its handle is the
    // message's (it has not come back: an extension was answered within the last second).
    let mut handle = None;
    wait_until_or(
        "the transient extension faults, then an extension",
        Duration::from_secs(30),
        &w,
        || {
            if p.faults(CMV) < 2 {
                return false;
            }
            let last_fault = p
                .seen()
                .iter()
                .rposition(|s| s.op == CMV && s.fault.is_some())
                .expect("a fault");
            handle = extended_handle(p, last_fault);
            handle.is_some()
        },
    );
    let handle = handle.expect("a handle");
    assert_eq!(
        w.metric("pcaplab_watch_redelivered_in_flight_total"),
        0.0,
        "the message came back during the transient faults: {}",
        w.log_text()
    );
    assert!(
        w.warnings("cannot extend the message's visibility")
            .is_empty(),
        "one transient fault per extension is the SDK's to retry: {}",
        w.log_text()
    );
    // From now on, every extension with that handle is throttled.
    let persistent_from = p.seen().len() - start;
    p.inject(Rule::new(CMV, Fault::Throttle).matching(&handle));
    wait_until_or(
        "the message back while its capture is in flight",
        Duration::from_secs(30),
        &w,
        || w.metric("pcaplab_watch_redelivered_in_flight_total") >= 1.0,
    );
    assert!(
        w.metric("pcaplab_watch_in_flight") >= 1.0,
        "the capture finished before its message came back: make it bigger"
    );
    lab.wait_done(&w, &["big.pcap"], Duration::from_secs(120));

    // The faults fired: the transient ones, whole extensions throttled (the SDK tries each
    // three times), the delayed item, both 500s on the delete.
    let seen: Vec<_> = p.seen().into_iter().skip(start).collect();
    let throttled = seen[persistent_from..]
        .iter()
        .filter(|s| s.op == CMV && s.subject.contains(&handle) && s.fault == Some(Fault::Throttle))
        .count();
    assert!(
        throttled >= 3,
        "{throttled} extensions throttled (handle {handle}): {:#?}\n{}",
        seen.iter()
            .filter(|s| s.op.starts_with("sqs:"))
            .collect::<Vec<_>>(),
        w.log_text()
    );
    assert_eq!(p.faults("dynamodb:PutItem"), 1);
    assert_eq!(p.faults(DELETE), 2, "the delete's 500s");
    // After the message came back, extensions with its new handle went through.
    let first_throttled = seen
        .iter()
        .position(|s| s.op == CMV && s.subject.contains(&handle) && s.fault.is_some())
        .expect("a throttled extension");
    assert!(
        seen[first_throttled..].iter().any(|s| s.op == CMV
            && s.fault.is_none()
            && s.status == Some(200)
            && !s.subject.contains(&handle)),
        "no extension with the new receipt handle succeeded: {:#?}\n{}",
        seen.iter()
            .filter(|s| s.op.starts_with("sqs:") || s.op.starts_with("dynamodb:"))
            .collect::<Vec<_>>(),
        w.log_text()
    );
    // Deleted with the latest handle.
    let deletes: Vec<_> = seen.iter().filter(|s| s.op == DELETE).collect();
    assert!(
        deletes.iter().all(|s| !s.subject.contains(&handle)),
        "a delete with the stale receipt handle: {deletes:?}"
    );
    assert_eq!(w.messages("deleted"), TEST_EVENT + 1.0);
    assert_eq!(w.messages("left"), 0.0);

    // Converted once, by its first receive.
    let conversions = w.conversions("big.pcap");
    eprintln!(
        "extensions: conversions (receive counts) {conversions:?}; {} extensions, {} faulted ({throttled} after the message's handle was cut off); {} deletes",
        p.count(CMV),
        p.faults(CMV),
        deletes.len()
    );
    assert_eq!(conversions, [1], "{}", w.log_text());
    assert_eq!(w.captures("processed"), 1);
    assert_eq!(w.captures("error"), 0);
    // And it said so.
    let warned = w.warnings("cannot extend the message's visibility");
    assert!(
        warned.iter().any(|l| {
            l["error"].as_str().is_some_and(|e| {
                e.contains("ThrottlingException") || e.contains("visibility timeout")
            })
        }),
        "no warning naming the failed extensions: {warned:?}\n{}",
        w.log_text()
    );
    assert!(
        !w.warnings("the message came back while its capture is still in flight")
            .is_empty(),
        "{}",
        w.log_text()
    );
    lab.assert_effect(&[("big.pcap", BIG)]);
    w.stop("TERM");
}

/// 2. Deletes that fail. First one that reaches SQS (the message is deleted) but whose answer
///    is lost: the message must not come back. Then deletes fail for a while: the watcher warns,
///    the message comes back after its visibility timeout and is converted again — to the same
///    keys and the same item — and deleted once SQS answers again.
#[test]
fn a_failed_or_unanswered_delete_ends_with_the_same_effect_and_an_empty_queue() {
    let Some(lab) = Lab::start(10) else { return };
    let p = &lab.proxy;
    let mut w = lab.watcher("deletes", &["--visibility-timeout", "2s"]);

    // Deleted, but the answer is lost.
    p.inject(Rule::new(DELETE, Fault::DropAnswer).times(1));
    lab.upload("a.pcap", 20_000);
    lab.wait_done(&w, &["a.pcap"], Duration::from_secs(60));
    assert_eq!(p.faults(DELETE), 1, "the lost answer");
    // Past a visibility timeout: it does not come back.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(lab.depth(), (0, 0, 0));
    assert_eq!(w.conversions("a.pcap"), [1], "{}", w.log_text());
    // SQS takes a repeated delete with the same handle: the retry succeeds.
    assert_eq!(w.messages("deleted"), TEST_EVENT + 1.0, "{}", w.log_text());
    assert_eq!(w.messages("left"), 0.0, "{}", w.log_text());

    // Deletes failing until the watcher has said so.
    p.inject(Rule::new(DELETE, Fault::InternalError));
    lab.upload("b.pcap", 30_000);
    wait_until_or("the failed delete", Duration::from_secs(60), &w, || {
        !w.warnings("the message cannot be deleted").is_empty()
    });
    let failed_deletes = p.faults(DELETE) - 1;
    p.heal();
    lab.wait_done(&w, &["a.pcap", "b.pcap"], Duration::from_secs(60));

    let conversions = w.conversions("b.pcap");
    eprintln!(
        "deletes: failing deletes: {failed_deletes} faulted requests, conversions of b (receive counts) {conversions:?}, back while in hand: {:?}",
        w.warnings("the message came back while its capture is still in flight")
            .iter()
            .map(|l| l["span"]["receives"].clone())
            .collect::<Vec<_>>()
    );
    assert!(failed_deletes >= 1);
    // Converted again when the message came back (its second receive: the visibility is
    // extended while the failing delete is retried, so it does not come back meanwhile),
    // then deleted.
    assert_eq!(conversions, [1, 2], "{}", w.log_text());
    assert!(
        w.warnings("the message came back while its capture is still in flight")
            .is_empty(),
        "{}",
        w.log_text()
    );
    assert_eq!(w.messages("left"), 1.0);
    assert_eq!(w.messages("deleted"), TEST_EVENT + 2.0);
    assert_eq!(w.captures("error"), 0);
    let warning = &w.warnings("the message cannot be deleted")[0];
    assert!(
        warning["error"]
            .as_str()
            .is_some_and(|e| e.contains("InternalError") || e.contains("500")),
        "the warning does not say why: {warning}"
    );
    lab.assert_effect(&[("a.pcap", 20_000), ("b.pcap", 30_000)]);
    w.stop("TERM");
}

/// 3. S3 and DynamoDB fail transiently while the captures are converted: the first two reads of
///    one capture are throttled (503 SlowDown), one output upload gets a 500, one item's write
///    is throttled twice. The retries absorb them: each capture converted once, each message
///    deleted, nothing left for a retry.
#[test]
fn transient_s3_and_dynamodb_faults_while_converting_are_absorbed() {
    let Some(lab) = Lab::start(2) else { return };
    let p = &lab.proxy;
    p.inject(
        Rule::new("s3:GetObject", Fault::Throttle)
            .matching("/captures/in/s1.pcap")
            .times(2),
    );
    p.inject(
        Rule::new("s3:PutObject", Fault::InternalError)
            .matching("s2.pcap")
            .times(1),
    );
    p.inject(
        Rule::new("dynamodb:PutItem", Fault::Throttle)
            .matching("captures/in/s3.pcap")
            .times(2),
    );
    let mut w = lab.watcher("s3-ddb", &["--visibility-timeout", "5s"]);
    let captures = [
        ("s1.pcap", 20_000),
        ("s2.pcap", 30_000),
        ("s3.pcap", 40_000),
    ];
    for (name, packets) in captures {
        lab.upload(name, packets);
    }
    lab.wait_done(&w, &captures.map(|(n, _)| n), Duration::from_secs(120));

    assert_eq!(p.faults("s3:GetObject"), 2, "the throttled reads");
    assert_eq!(p.faults("s3:PutObject"), 1, "the failed upload");
    assert_eq!(p.faults("dynamodb:PutItem"), 2, "the throttled item");
    for (name, _) in captures {
        assert_eq!(w.conversions(name), [1], "{name}: {}", w.log_text());
    }
    assert_eq!(w.captures("processed"), 3);
    assert_eq!(w.captures("error"), 0);
    assert_eq!(w.messages("deleted"), TEST_EVENT + 3.0);
    assert_eq!(w.messages("left"), 0.0);
    lab.assert_effect(&captures);
    w.stop("TERM");
}

/// 4. `--sns-topic-arn` with `sns:Publish` failing (500) for a while: the capture is converted
///    but its announcement fails, which is an error — the message is left, comes back and fails
///    again. Once SNS works, the redelivery converts and announces: exactly one announcement,
///    one item, the same keys.
#[test]
fn a_failed_announcement_leaves_the_message_and_the_retry_announces_once() {
    let Some(lab) = Lab::start(10) else { return };
    let p = &lab.proxy;
    p.inject(Rule::new("sns:Publish", Fault::InternalError));
    let topic = lab.topic.clone();
    let mut w = lab.watcher(
        "sns",
        &["--visibility-timeout", "2s", "--sns-topic-arn", &topic],
    );
    lab.upload("a.pcap", 20_000);
    let url = "s3://captures/in/a.pcap";
    let failures = |w: &Watcher| -> Vec<Value> {
        w.warnings("capture failed; it will be retried")
            .into_iter()
            .filter(|l| l["object"] == url)
            .collect()
    };
    // Failed, left, back (a second receive), failed again.
    wait_until_or(
        "the announcement failing on two receives",
        Duration::from_secs(60),
        &w,
        || {
            failures(&w)
                .iter()
                .any(|l| l["span"]["receives"].as_str().is_some_and(|r| r != "1"))
        },
    );
    let failed = failures(&w);
    let publishes = p.faults("sns:Publish");
    p.heal();
    lab.wait_done(&w, &["a.pcap"], Duration::from_secs(60));

    let conversions = w.conversions("a.pcap");
    eprintln!(
        "sns: {} failed attempts (publish requests faulted: {publishes}), then converted and announced on receives {conversions:?}; the first failure: {}",
        failed.len(),
        failed[0]
    );
    assert!(publishes >= 2, "the publish failed {publishes} times");
    for l in &failed {
        let error = l["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(&format!(
                "{url}: converted, but announcing it on {topic} failed"
            )) && error.contains("InternalError"),
            "the error does not name the publish: {l}"
        );
        assert_eq!(l["retryable"], true, "{l}");
    }
    assert!(
        w.messages("left") >= 2.0,
        "the message was not left for a retry"
    );
    assert_eq!(w.messages("deleted"), TEST_EVENT + 1.0);
    assert_eq!(conversions.len(), 1, "{}", w.log_text());
    assert!(conversions[0] >= 3, "{conversions:?}");
    let announced = lab.announcements();
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert_eq!(announced[0]["s3Id"], "captures/in/a.pcap");
    assert_eq!(announced[0]["packets"], 20_000);
    assert_eq!(announced[0]["status"], "ok");
    let expected = lab.expected_keys(&["a.pcap"]);
    assert_eq!(
        announced[0]["outputs"]["parquet"],
        format!("s3://results/{}", expected.first().expect("a key"))
    );
    lab.assert_effect(&[("a.pcap", 20_000)]);
    w.stop("TERM");
}

/// 5. The receives are throttled across several calls (more than the SDK's retries of one):
///    the watcher warns, backs off (1 s, 2 s, 4 s), says it is unhealthy on `/healthz` after
///    three failed receives in a row, and keeps receiving; the waiting messages are then
///    processed once each, and it is healthy again.
#[test]
fn throttled_receives_back_off_and_the_messages_are_then_processed() {
    let Some(lab) = Lab::start(2) else { return };
    let p = &lab.proxy;
    let captures = [("r1.pcap", 10_000), ("r2.pcap", 15_000)];
    for (name, packets) in captures {
        lab.upload(name, packets);
    }
    // Ten throttled receives: three whole calls and the first attempt of a fourth (the SDK
    // tries each call three times).
    p.inject(Rule::new("sqs:ReceiveMessage", Fault::Throttle).times(10));
    let started = Instant::now();
    let mut w = lab.starting("receives", &["--visibility-timeout", "5s"]);
    // Unhealthy during the pause after the third failed receive.
    let mut unhealthy = None;
    wait_until_or(
        "/healthz unhealthy after three failed receives",
        Duration::from_secs(60),
        &w,
        || {
            unhealthy = http_get(w.port, "/healthz").filter(|(s, _)| *s == 503);
            unhealthy.is_some()
        },
    );
    let (_, body) = unhealthy.expect("a 503");
    assert!(
        body.contains("3 consecutive failures") && body.contains("ThrottlingException"),
        "{body}"
    );
    lab.wait_done(&w, &captures.map(|(n, _)| n), Duration::from_secs(120));

    assert_eq!(p.faults("sqs:ReceiveMessage"), 10);
    let warned = w.warnings("cannot receive from the queue");
    eprintln!(
        "receives: {} warnings, {} source errors, done after {:?}",
        warned.len(),
        w.metric("pcaplab_watch_source_errors_total"),
        started.elapsed()
    );
    assert_eq!(warned.len(), 3, "{}", w.log_text());
    assert!(
        warned.iter().all(|l| l["error"]
            .as_str()
            .is_some_and(|e| e.contains("ThrottlingException"))),
        "{warned:?}"
    );
    // Backed off: 1 s, doubling.
    let pauses: Vec<u64> = warned
        .iter()
        .filter_map(|l| l["retry_in_s"].as_u64())
        .collect();
    assert_eq!(pauses, [1, 2, 4]);
    assert_eq!(w.metric("pcaplab_watch_source_errors_total"), 3.0);
    // Receiving again: healthy.
    assert_eq!(
        http_get(w.port, "/healthz").map(|(s, _)| s),
        Some(200),
        "/healthz after the receives recovered"
    );
    for (name, _) in captures {
        assert_eq!(w.conversions(name), [1], "{name}: {}", w.log_text());
    }
    assert_eq!(w.messages("deleted"), TEST_EVENT + 2.0);
    assert_eq!(w.messages("left"), 0.0);
    lab.assert_effect(&captures);
    w.stop("TERM");
}

/// 6. Poll mode: the claims and lease renewals (conditional `UpdateItem`s on the captures'
///    items) throttled, then one claim that took effect but whose answer was lost — its retry
///    must find the lease its own, not another watcher's. Each capture converted once, the same
///    keys and items as without faults, no lease left behind.
#[test]
fn poll_mode_claims_survive_throttling_and_a_lost_answer() {
    let Some(lab) = Lab::start(10) else { return };
    let p = &lab.proxy;
    let captures = [("p1.pcap", 200_000), ("p2.pcap", 30_000)];
    for (name, packets) in captures {
        lab.upload(name, packets);
    }
    p.inject(Rule::new("dynamodb:UpdateItem", Fault::Throttle).times(3));
    p.inject(
        Rule::new("dynamodb:UpdateItem", Fault::DropAnswer)
            .matching("p2.pcap")
            .times(1),
    );
    let mut w = lab.poller("poll", &[]);
    let ids: BTreeSet<String> = captures
        .iter()
        .map(|(n, _)| format!("captures/in/{n}"))
        .collect();
    wait_until_or(
        "an ok item for each capture",
        Duration::from_secs(90),
        &w,
        || {
            let items = lab.moto.items();
            items.keys().cloned().collect::<BTreeSet<_>>() == ids
                && items.values().all(|i| i.status == "ok")
        },
    );
    // A few more rounds: nothing is converted again.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(p.faults("dynamodb:UpdateItem"), 4, "{:?}", p.seen());
    for (name, _) in captures {
        assert_eq!(w.conversions(name).len(), 1, "{name}: {}", w.log_text());
    }
    lab.assert_effect(&captures);
    lab.assert_no_lease();
    w.stop("TERM");
}

/// 7. Poll mode, `--sns-topic-arn`, and each `sns:Publish` held back 2.5 s (the lease, 3 s, is
///    renewed every second): the item's write ends the lease while the announcement is still
///    on its way, so a renewal finds the lease gone. That is the work's own result, not a lease
///    lost to another watcher: the conversion finishes, announces once, and is not taken again.
#[test]
fn a_renewal_after_the_result_is_written_lets_the_work_announce() {
    let Some(lab) = Lab::start(10) else { return };
    let p = &lab.proxy;
    lab.upload("s.pcap", 20_000);
    p.inject(Rule::new(
        "sns:Publish",
        Fault::Delay(Duration::from_millis(2_500)),
    ));
    let topic = lab.topic.clone();
    let mut w = lab.poller("poll-sns", &["--sns-topic-arn", &topic]);
    wait_until_or(
        "the capture converted and announced",
        Duration::from_secs(60),
        &w,
        || !w.conversions("s.pcap").is_empty(),
    );
    // A few more rounds: nothing is converted again.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(p.faults("sns:Publish"), 1, "{:?}", p.seen());
    assert_eq!(w.conversions("s.pcap").len(), 1, "{}", w.log_text());
    assert!(
        w.warnings("the lease ran out").is_empty(),
        "{}",
        w.log_text()
    );
    assert_eq!(w.metric("pcaplab_watch_claims_total{result=\"lost\"}"), 0.0);
    let announced = lab.announcements();
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert_eq!(announced[0]["s3Id"], "captures/in/s.pcap");
    assert_eq!(announced[0]["status"], "ok");
    lab.assert_effect(&[("s.pcap", 20_000)]);
    lab.assert_no_lease();
    w.stop("TERM");
}
