//! `pcaplab watch` against moto's server (S3, SQS with S3 → SQS notifications, DynamoDB), the
//! watcher being the real binary in a child process:
//!
//! 1. SQS mode: every corpus capture (69) uploaded to a bucket that notifies a queue gets its
//!    outputs and exactly one item; a big capture outlasts the visibility timeout without
//!    being redelivered; a corrupt one is recorded as failed; an unusable message and one
//!    naming a missing object end in the dead-letter queue; the queue ends empty.
//! 2. A watcher SIGKILLed while it holds messages: another one finishes everything, nothing is
//!    lost or doubled, and no partial output is visible.
//! 3. A watcher stopped (SIGSTOP) past its visibility timeout is handed the message it is
//!    still working on again: the capture is converted once and the message deleted.
//! 4. Poll mode, two watchers on one prefix: no capture processed twice (their counters add up
//!    to the captures), a dead watcher's claim is taken over when its lease runs out, a changed
//!    object is processed again.
//! 5. SIGTERM during processing finishes the capture and exits 0; past the shutdown deadline
//!    the message is handed back.
//! 6. A watcher that cannot start says what is wrong (exit 2).
//! 7. A poll watcher whose lease is taken over stops its work and writes nothing; once that
//!    lease runs out, the capture is claimed and done.
//!
//! Needs `$PCAPLAB_PYTHON` (boto3, moto[server], pyarrow) and `$PCAPLAB_CORPUS`; without them
//! each test prints a loud SKIPPED line, or fails under `$PCAPLAB_REQUIRE_ALL` (as in CI).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pcaplab_testkit::{
    Item, Moto, corpus, expected_packets, fields, python, udp_capture, wait_until,
};

mod watcher;
use watcher::{TABLE, Watcher, dataset_rows, depth, setup};

impl Watcher {
    /// The objects it finished (converted or recorded as failed), from its log.
    fn finished_objects(&self) -> Vec<String> {
        self.logs()
            .iter()
            .filter(|l| {
                l["message"] == "capture converted"
                    || l["message"] == "capture recorded as failed; not retried"
            })
            .map(|l| l["object"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The `capture converted` lines: object URL → (seconds, receive count of its message).
    fn converted(&self) -> Vec<(String, f64, u64)> {
        self.logs()
            .iter()
            .filter(|l| l["message"] == "capture converted")
            .map(|l| {
                let receives = l["span"]["receives"]
                    .as_str()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0);
                (
                    l["object"].as_str().unwrap_or_default().to_owned(),
                    l["seconds"].as_f64().unwrap_or_default(),
                    receives,
                )
            })
            .collect()
    }
}

/// The keys of `s3://results/` that `items` list as outputs.
fn listed_outputs(items: &BTreeMap<String, Item>) -> BTreeSet<String> {
    items
        .values()
        .flat_map(|i| i.outputs.values())
        .map(|u| {
            u.strip_prefix("s3://results/")
                .expect("an output in results")
                .to_owned()
        })
        .collect()
}

/// Every finished item must have a status (a bare claim has none).
fn finished(items: &BTreeMap<String, Item>, ids: &BTreeSet<String>) -> bool {
    items.keys().cloned().collect::<BTreeSet<_>>() == *ids
        && items
            .values()
            .all(|i| !i.status.is_empty() && i.status != "-")
}

fn prerequisites() -> Option<(PathBuf, PathBuf)> {
    Some((python()?, corpus()?))
}

/// Corpus captures the default key filter takes (`.cap`, `.pcap`, `.pcapng`, plain, gzip or
/// zstd), by file name.
fn corpus_captures(corpus: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(corpus)
        .expect("corpus")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            [".cap", ".pcap", ".pcapng"].iter().any(|s| {
                [*s, &format!("{s}.gz"), &format!("{s}.zst")]
                    .iter()
                    .any(|x| n.ends_with(x))
            })
        })
        .collect();
    names.sort();
    names
}

/// Corpus captures that are not captures pcaplab can open: recorded as `failed`.
const UNREADABLE: &[&str] = &[
    // pcap version 1.4 (an early, incompatible format): "unsupported".
    "libpcap__pcap-invalid-version-1.pcap",
];

#[test]
fn sqs_mode_converts_every_notified_capture_exactly_once() {
    let Some((py, corpus)) = prerequisites() else {
        return;
    };
    let moto = Moto::start(&py);
    let queue = setup(&moto, 2).0;
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big.pcap");
    const BIG: u32 = 600_000;
    udp_capture(&big, BIG);
    std::fs::write(
        dir.path().join("bad.pcap"),
        b"this is not a capture, whatever its name",
    )
    .expect("write");
    std::fs::write(dir.path().join("notes.txt"), b"not for the watcher").expect("write");

    let mut w = Watcher::start(
        &moto,
        &moto.endpoint(),
        dir.path(),
        "sqs",
        &[
            "--sqs-queue-url",
            &queue,
            "--out",
            "s3://results/",
            "--dynamodb-table",
            TABLE,
            "--concurrency",
            "3",
            // Short, so that the big capture outlasts it; not so short that a watcher starved
            // of CPU by the other tests (2 cores) misses an extension (every third of it).
            "--visibility-timeout",
            "2s",
            "--receive-wait",
            "1s",
        ],
    );

    // Key → (local file, expected packets); a space and a plus in one key (S3 encodes them in
    // the notification as "+" and "%2B").
    let names = corpus_captures(&corpus);
    assert!(names.len() >= 40, "{} corpus captures", names.len());
    let mut uploads: Vec<(PathBuf, String)> = names
        .iter()
        .map(|n| (corpus.join(n), format!("in/{n}")))
        .collect();
    uploads[0].1 = format!("in/a b+c/{}", names[0]);
    uploads.push((big.clone(), "in/big.pcap".into()));
    uploads.push((dir.path().join("bad.pcap"), "in/bad.pcap".into()));
    // Not taken by the key filter: skipped, no item.
    uploads.push((dir.path().join("notes.txt"), "in/notes.txt".into()));
    uploads.push((
        corpus.join("pcapplusplus__solaris.snoop"),
        "in/sun.snoop".into(),
    ));
    moto.upload("captures", &uploads);
    // A message that names nothing readable, and a notification of an object that is gone:
    // each left, and after 2 receives in the dead-letter queue.
    moto.py(
        r#"sqs.send_message(QueueUrl=sys.argv[1], MessageBody='{"hello": "world"}')
gone = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
    "s3": {"bucket": {"name": "captures"}, "object": {"key": "in/gone.pcap"}}}]}
sqs.send_message(QueueUrl=sys.argv[1], MessageBody=json.dumps(gone))"#,
        &[&queue],
    );

    let ids: BTreeSet<String> = uploads
        .iter()
        .filter(|(_, k)| !k.ends_with(".txt") && !k.ends_with(".snoop"))
        .map(|(_, k)| format!("captures/{k}"))
        .collect();
    wait_until(
        "an item for every capture",
        Duration::from_secs(240),
        || finished(&moto.items(), &ids),
    );
    wait_until(
        "an empty queue and the two failing messages in the dead-letter queue",
        Duration::from_secs(60),
        || depth(&moto) == (0, 0, 2),
    );

    let items = moto.items();
    for (path, key) in uploads
        .iter()
        .filter(|(_, k)| ids.contains(&format!("captures/{k}")))
    {
        let id = format!("captures/{key}");
        let item = &items[&id];
        let name = path.file_name().and_then(|n| n.to_str()).expect("name");
        if name == "bad.pcap" || UNREADABLE.contains(&name) {
            assert_eq!(item.status, "failed", "{id}");
            assert!(
                item.reason.as_deref().is_some_and(|r| r.contains(&id)),
                "{id}: {item:?}"
            );
            assert!(item.outputs.is_empty(), "{id}");
            continue;
        }
        assert!(
            matches!(item.status.as_str(), "ok" | "damaged"),
            "{id}: {item:?}"
        );
        let want = if name == "big.pcap" {
            u64::from(BIG)
        } else {
            expected_packets(&corpus, &py, name)
        };
        assert_eq!(item.packets, Some(want), "{id}");
        assert_eq!(
            item.outputs.keys().map(String::as_str).collect::<Vec<_>>(),
            ["lab-csv", "parquet"],
            "{id}"
        );
    }
    assert!(
        items["captures/in/bad.pcap"]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("not a packet capture"))
    );
    // Exactly the outputs the items list, each Parquet file read back with its rows.
    assert_eq!(moto.keys("results", ""), listed_outputs(&items));
    let rows = dataset_rows(&moto);
    for (id, item) in items.iter().filter(|(_, i)| i.status != "failed") {
        let n = item.packets.unwrap_or_default();
        assert_eq!(rows.get(id).copied().unwrap_or(0), n, "{id}");
    }

    // Every capture once: no message was redelivered, not even the big one, which took longer
    // than the visibility timeout (extended while it ran) — and a message that did come back
    // while its capture was in flight (the watcher starved of CPU past the timeout) was not
    // converted again.
    let readable = (ids.len() - 1 - UNREADABLE.len()) as u64;
    let converted = w.converted();
    let mut conversions: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (url, _, receives) in &converted {
        conversions.entry(url).or_default().push(*receives);
    }
    let twice: Vec<_> = conversions.iter().filter(|(_, r)| r.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "converted more than once (the receive counts of their messages): {twice:?}\n{}",
        w.log_text()
    );
    let readable_urls: BTreeSet<String> = uploads
        .iter()
        .filter(|(p, k)| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            ids.contains(&format!("captures/{k}"))
                && name != "bad.pcap"
                && !UNREADABLE.contains(&name)
        })
        .map(|(_, k)| format!("s3://captures/{k}"))
        .collect();
    assert_eq!(readable_urls.len() as u64, readable);
    assert_eq!(
        conversions
            .keys()
            .map(|u| u.to_string())
            .collect::<BTreeSet<_>>(),
        readable_urls
    );
    assert_eq!(w.captures("processed") + w.captures("damaged"), readable);
    assert_eq!(w.captures("failed"), 1 + UNREADABLE.len() as u64);
    // in/gone.pcap, received twice.
    assert_eq!(w.captures("error"), 2);
    let messages =
        |r: &str| w.metrics()[&format!("pcaplab_watch_messages_total{{result=\"{r}\"}}")];
    assert_eq!(messages("left"), 4.0);
    // notes.txt and sun.snoop.
    assert_eq!(w.metrics()["pcaplab_watch_skipped_total"], 2.0);
    assert_eq!(converted.len() as u64, readable);
    let (_, seconds, receives) = converted
        .iter()
        .find(|(url, _, _)| url == "s3://captures/in/big.pcap")
        .expect("the big capture was converted");
    assert!(
        *seconds > 2.5,
        "the big capture took {seconds} s, not longer than the 2 s visibility timeout: make it bigger"
    );
    assert!(converted.iter().all(|(_, _, r)| *r == 1), "{converted:?}");
    assert_eq!(*receives, 1);

    w.stop("TERM");
}

#[test]
fn a_killed_watcher_loses_nothing_and_doubles_nothing() {
    let Some((py, corpus)) = prerequisites() else {
        return;
    };
    let moto = Moto::start(&py);
    let queue = setup(&moto, 2).0;
    let dir = tempfile::tempdir().expect("tempdir");
    let args = [
        "--sqs-queue-url",
        &queue,
        "--out",
        "s3://results/",
        "--dynamodb-table",
        TABLE,
        "--concurrency",
        "2",
        "--visibility-timeout",
        "3s",
        "--receive-wait",
        "1s",
    ];
    let mut uploads: Vec<(PathBuf, String)> = Vec::new();
    for i in 0..3 {
        let path = dir.path().join(format!("big{i}.pcap"));
        udp_capture(&path, 200_000 + i * 1000);
        uploads.push((path, format!("in/big{i}.pcap")));
    }
    for n in corpus_captures(&corpus).iter().take(10) {
        uploads.push((corpus.join(n), format!("in/{n}")));
    }
    let ids: BTreeSet<String> = uploads
        .iter()
        .map(|(_, k)| format!("captures/{k}"))
        .collect();

    let mut a = Watcher::start(&moto, &moto.endpoint(), dir.path(), "a", &args);
    moto.upload("captures", &uploads[..3]);
    // Kill it while it holds messages (captures in flight).
    wait_until("the first watcher at work", Duration::from_secs(60), || {
        a.metrics()["pcaplab_watch_in_flight"] >= 1.0
    });
    a.child.0.kill().expect("SIGKILL");
    a.wait(Duration::from_secs(10));
    let before = moto.items();
    moto.upload("captures", &uploads[3..]);

    let b = Watcher::start(&moto, &moto.endpoint(), dir.path(), "b", &args);
    wait_until(
        "an item for every capture",
        Duration::from_secs(180),
        || finished(&moto.items(), &ids),
    );
    wait_until("an empty queue", Duration::from_secs(60), || {
        depth(&moto) == (0, 0, 0)
    });

    let items = moto.items();
    for (id, item) in &items {
        assert_eq!(item.status, "ok", "{id}");
    }
    // What the killed watcher held came back to the queue and was done by the other.
    let redelivered: Vec<_> = b
        .converted()
        .into_iter()
        .filter(|(_, _, r)| *r >= 2)
        .collect();
    assert!(
        !redelivered.is_empty(),
        "no message came back from the killed watcher (it had finished {} before the kill)",
        before.len()
    );
    // No partial output visible: exactly what the items list, and the dataset reads back.
    assert_eq!(moto.keys("results", ""), listed_outputs(&items));
    let rows = dataset_rows(&moto);
    let packets: BTreeMap<String, u64> = items
        .iter()
        .map(|(id, i)| (id.clone(), i.packets.unwrap_or_default()))
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(rows, packets);
}

/// A watcher that misses its visibility extensions — stopped here with SIGSTOP past the
/// visibility timeout, as a watcher starved of CPU, paused by its host or cut off from SQS
/// for a while would be — is handed the message it is still working on again by its own long
/// poll. It must not convert the capture a second time (nor delete the message with a stale
/// receipt handle): one conversion, one item, each output once, the message deleted.
#[test]
fn a_message_back_while_its_capture_is_in_flight_is_not_converted_twice() {
    let Some((py, _corpus)) = prerequisites() else {
        return;
    };
    let moto = Moto::start(&py);
    // The message may come back more than once here: no dead-letter queue after 2 receives.
    let queue = setup(&moto, 10).0;
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big.pcap");
    const BIG: u32 = 400_000;
    udp_capture(&big, BIG);
    let mut w = Watcher::start(
        &moto,
        &moto.endpoint(),
        dir.path(),
        "lapse",
        &[
            "--sqs-queue-url",
            &queue,
            "--out",
            "s3://results/",
            "--dynamodb-table",
            TABLE,
            "--concurrency",
            "2",
            "--visibility-timeout",
            "1s",
            // While the watcher is stopped, the receive it has pending (a free slot) waits in
            // the queue and is handed the message as soon as its visibility lapses.
            "--receive-wait",
            "20s",
        ],
    );
    moto.upload("captures", &[(big.clone(), "in/big.pcap".into())]);
    wait_until("the capture in flight", Duration::from_secs(60), || {
        w.metrics()["pcaplab_watch_in_flight"] >= 1.0
    });
    // The message came back: a log line in the span of its second receive, or (a watcher
    // that takes it for new work) a second capture in flight.
    let came_back = |w: &Watcher| {
        w.metrics()["pcaplab_watch_in_flight"] >= 2.0
            || w.logs().iter().any(|l| {
                l["span"]["receives"]
                    .as_str()
                    .and_then(|r| r.parse::<u64>().ok())
                    .is_some_and(|r| r >= 2)
            })
    };
    for attempt in 1.. {
        w.signal("STOP");
        std::thread::sleep(Duration::from_secs(3));
        w.signal("CONT");
        std::thread::sleep(Duration::from_secs(1));
        if came_back(&w) {
            break;
        }
        assert!(
            attempt < 5 && w.metrics()["pcaplab_watch_in_flight"] >= 1.0,
            "the message did not come back while its capture was in flight:\n{}",
            w.log_text()
        );
    }

    let id = "captures/in/big.pcap";
    wait_until("the capture's item", Duration::from_secs(180), || {
        finished(&moto.items(), &BTreeSet::from([id.to_owned()]))
    });
    wait_until("an empty queue", Duration::from_secs(60), || {
        depth(&moto) == (0, 0, 0)
    });
    wait_until("nothing in flight", Duration::from_secs(120), || {
        w.metrics()["pcaplab_watch_in_flight"] == 0.0
    });
    // Converted once, by the task that received the message first.
    let converted = w.converted();
    assert_eq!(converted.len(), 1, "{converted:?}\n{}", w.log_text());
    assert_eq!(converted[0].2, 1, "{converted:?}");
    assert_eq!(w.captures("processed"), 1);
    // Deleted (the queue is empty) with its latest receipt handle, not left for a retry.
    assert_eq!(
        w.metrics()["pcaplab_watch_messages_total{result=\"left\"}"],
        0.0
    );
    assert!(w.metrics()["pcaplab_watch_redelivered_in_flight_total"] >= 1.0);
    let items = moto.items();
    assert_eq!(items[id].status, "ok");
    assert_eq!(items[id].packets, Some(u64::from(BIG)));
    assert_eq!(moto.keys("results", ""), listed_outputs(&items));
    assert_eq!(
        dataset_rows(&moto),
        BTreeMap::from([(id.to_owned(), u64::from(BIG))])
    );
    w.stop("TERM");
}

#[test]
fn poll_mode_watchers_share_a_prefix_without_double_work() {
    let Some((py, corpus)) = prerequisites() else {
        return;
    };
    let moto = Moto::start(&py);
    setup(&moto, 2);
    let dir = tempfile::tempdir().expect("tempdir");
    let names: Vec<String> = corpus_captures(&corpus).into_iter().take(20).collect();
    let mut uploads: Vec<(PathBuf, String)> = names
        .iter()
        .map(|n| (corpus.join(n), format!("drop/{n}")))
        .collect();
    std::fs::write(dir.path().join("bad.pcap"), b"garbage, not a capture").expect("write");
    uploads.push((dir.path().join("bad.pcap"), "drop/bad.pcap".into()));
    // Outside the polled prefix: never touched.
    uploads.push((corpus.join(&names[0]), "elsewhere/x.pcap".into()));
    moto.upload("captures", &uploads);
    // A claim by a watcher that died: live for 4 more seconds, then anyone's.
    let held = format!("captures/drop/{}", names[1]);
    moto.py(
        r#"import time
ddb.put_item(TableName="PacketCaptures", Item={"s3Id": {"S": sys.argv[1]},
    "lease_owner": {"S": "dead-watcher"}, "lease_until": {"N": str(int(time.time() * 1000) + 4000)},
    "lease_etag": {"S": "x"}})"#,
        &[&held],
    );
    let claimed_at = Instant::now();

    let args = [
        "--poll",
        "s3://captures/drop/",
        "--interval",
        "1s",
        "--lease",
        "6s",
        "--out",
        "s3://results/",
        "--dynamodb-table",
        TABLE,
        "--concurrency",
        "2",
    ];
    let mut w1 = Watcher::start(&moto, &moto.endpoint(), dir.path(), "w1", &args);
    let mut w2 = Watcher::start(&moto, &moto.endpoint(), dir.path(), "w2", &args);
    let ids: BTreeSet<String> = uploads[..uploads.len() - 1]
        .iter()
        .map(|(_, k)| format!("captures/{k}"))
        .collect();
    wait_until(
        "an item for every capture",
        Duration::from_secs(180),
        || finished(&moto.items(), &ids),
    );
    let taken_over_after = claimed_at.elapsed();
    let total = |outcome: &str| w1.captures(outcome) + w2.captures(outcome);
    let done = || total("processed") + total("damaged") + total("failed");
    // Nothing more happens on the next rounds.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        done(),
        ids.len() as u64,
        "each capture exactly once; w1 did {:?}, w2 did {:?}",
        w1.finished_objects(),
        w2.finished_objects()
    );
    assert_eq!(total("error"), 0);
    let unreadable = names
        .iter()
        .filter(|n| UNREADABLE.contains(&n.as_str()))
        .count();
    assert_eq!(total("failed"), 1 + unreadable as u64);
    let items = moto.items();
    assert!(
        items["captures/drop/bad.pcap"]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("not a packet capture"))
    );
    assert!(
        taken_over_after >= Duration::from_secs(3),
        "the live claim was not respected"
    );
    let claims = |r: &str| {
        let key = format!("pcaplab_watch_claims_total{{result=\"{r}\"}}");
        w1.metrics()[&key] + w2.metrics()[&key]
    };
    assert!(claims("held") >= 1.0, "nobody saw the dead watcher's claim");
    assert_eq!(moto.keys("results", ""), listed_outputs(&items));
    // No claim left behind on any item.
    let leases = moto.py(
        "for it in items():\n    emit('lease', it['s3Id']['S'], ','.join(sorted(k for k in it if k.startswith('lease'))))",
        &[],
    );
    assert!(
        fields(&leases, "lease").iter().all(|f| f[1].is_empty()),
        "{leases}"
    );

    // A changed object (new ETag) is processed again — once.
    moto.upload(
        "captures",
        &[(corpus.join(&names[2]), format!("drop/{}", names[0]))],
    );
    let changed = format!("captures/drop/{}", names[0]);
    let old_etag = items[&changed].etag.clone();
    wait_until(
        "the changed object's new item",
        Duration::from_secs(60),
        || moto.items()[&changed].etag != old_etag,
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(done(), ids.len() as u64 + 1);
    let items = moto.items();
    assert_eq!(
        items[&changed].packets,
        Some(expected_packets(&corpus, &py, &names[2]))
    );
    assert_eq!(moto.keys("results", ""), listed_outputs(&items));

    for w in [&w1, &w2] {
        w.signal("INT");
    }
    for w in [&mut w1, &mut w2] {
        let status = w.wait(Duration::from_secs(60));
        assert!(status.success(), "{status}: {}", w.log_text());
    }
}

#[test]
fn sigterm_finishes_the_capture_in_flight_or_hands_it_back() {
    let Some((py, _)) = prerequisites() else {
        return;
    };
    let moto = Moto::start(&py);
    let queue = setup(&moto, 2).0;
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big.pcap");
    udp_capture(&big, 300_000);
    let base = [
        "--sqs-queue-url",
        &queue,
        "--out",
        "s3://results/",
        "--dynamodb-table",
        TABLE,
        "--receive-wait",
        "1s",
    ];

    // Within the deadline: the capture is finished, its message deleted, exit 0.
    let mut w = Watcher::start(&moto, &moto.endpoint(), dir.path(), "graceful", &base);
    moto.upload("captures", &[(big.clone(), "in/one.pcap".into())]);
    wait_until("the capture in flight", Duration::from_secs(60), || {
        w.metrics()["pcaplab_watch_in_flight"] >= 1.0
    });
    w.signal("TERM");
    let status = w.wait(Duration::from_secs(60));
    assert!(status.success(), "{status}: {}", w.log_text());
    assert_eq!(moto.items()["captures/in/one.pcap"].packets, Some(300_000));
    assert_eq!(depth(&moto), (0, 0, 0));
    let logs = w.logs();
    assert!(
        logs.iter()
            .any(|l| l["message"] == "stopping: no new work" && l["signal"] == "SIGTERM")
    );
    assert!(
        logs.iter()
            .any(|l| l["message"] == "shut down: nothing left in flight")
    );

    // Past the deadline: the message is made visible again at once, nothing is written.
    let mut args = base.to_vec();
    args.extend(["--shutdown-timeout", "0s"]);
    let mut w = Watcher::start(&moto, &moto.endpoint(), dir.path(), "deadline", &args);
    moto.upload("captures", &[(big.clone(), "in/two.pcap".into())]);
    wait_until("the capture in flight", Duration::from_secs(60), || {
        w.metrics()["pcaplab_watch_in_flight"] >= 1.0
    });
    w.signal("TERM");
    let status = w.wait(Duration::from_secs(30));
    assert!(status.success(), "{status}: {}", w.log_text());
    assert!(!moto.items().contains_key("captures/in/two.pcap"));
    assert_eq!(depth(&moto), (1, 0, 0), "the message is back on the queue");
    assert_eq!(
        moto.keys("results", "packets/").len(),
        1,
        "only one.pcap's Parquet"
    );

    // And the next watcher does it.
    let mut w = Watcher::start(&moto, &moto.endpoint(), dir.path(), "next", &base);
    wait_until("the handed-back capture", Duration::from_secs(60), || {
        moto.items().contains_key("captures/in/two.pcap")
    });
    w.stop("TERM");
}

#[test]
fn a_watcher_that_cannot_start_says_what_is_wrong() {
    let Some(py) = python() else {
        return;
    };
    let moto = Moto::start(&py);
    let queue = setup(&moto, 2).0;
    let missing_queue = queue.replace("/captures", "/no-such-queue");
    let cases: [(&[&str], &str); 8] = [
        (&[], "--sqs-queue-url"),
        (
            &["--sqs-queue-url", &queue, "--poll", "s3://captures/"],
            "cannot be used with",
        ),
        (&["--sqs-queue-url", &missing_queue], "SQS queue http"),
        (
            &["--sqs-queue-url", &queue, "--dynamodb-table", "Nope"],
            "DynamoDB table Nope: table not found",
        ),
        (
            &["--poll", "s3://captures/in/"],
            "polling needs a DynamoDB table (--dynamodb-table)",
        ),
        (
            &[
                "--poll",
                "s3://no-such-bucket/in/",
                "--dynamodb-table",
                TABLE,
            ],
            "s3://no-such-bucket/in/",
        ),
        (
            &["--poll", "s3://captures/in", "--dynamodb-table", TABLE],
            "a prefix ends with '/' (did you mean s3://captures/in/ ?)",
        ),
        (
            &["--sqs-queue-url", &queue, "--lease", "1s"],
            "--lease 1s: at least 3s",
        ),
    ];
    for (args, want) in cases {
        let o = moto
            .env(&mut Command::new(env!("CARGO_BIN_EXE_pcaplab")))
            .arg("watch")
            .args(args)
            .output()
            .expect("run pcaplab watch");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {want:?} not in\n{err}");
    }
    // A busy metrics port.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let o = moto
        .env(&mut Command::new(env!("CARGO_BIN_EXE_pcaplab")))
        .args([
            "watch",
            "--sqs-queue-url",
            &queue,
            "--metrics-listen",
            &addr,
        ])
        .output()
        .expect("run pcaplab watch");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("--metrics-listen {addr}")), "{err}");
}

#[test]
fn a_poll_watcher_that_loses_its_lease_stops_and_writes_nothing() {
    let Some(py) = python() else {
        return;
    };
    let moto = Moto::start(&py);
    setup(&moto, 2);
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big.pcap");
    // Several seconds of work in a debug build: the lease is taken away long before the end.
    udp_capture(&big, 1_000_000);
    moto.upload("captures", &[(big, "drop/big.pcap".into())]);
    let mut w = Watcher::start(
        &moto,
        &moto.endpoint(),
        dir.path(),
        "loser",
        &[
            "--poll",
            "s3://captures/drop/",
            "--interval",
            "1s",
            "--lease",
            "3s",
            "--out",
            "s3://results/",
            "--dynamodb-table",
            TABLE,
        ],
    );
    wait_until("the capture in flight", Duration::from_secs(60), || {
        w.metrics()["pcaplab_watch_in_flight"] >= 1.0
    });
    // Another watcher takes the claim over (as if this one had been paused past its lease).
    let steal = r#"import time
ddb.update_item(TableName="PacketCaptures", Key={"s3Id": {"S": "captures/drop/big.pcap"}},
    UpdateExpression="SET lease_owner = :o, lease_until = :u",
    ExpressionAttributeValues={":o": {"S": "thief"}, ":u": {"N": str(int(time.time() * 1000) + int(sys.argv[1]))}})"#;
    moto.py(steal, &["600000"]);
    let lost = "pcaplab_watch_claims_total{result=\"lost\"}";
    wait_until("the lost lease noticed", Duration::from_secs(30), || {
        w.metrics()[lost] >= 1.0
    });
    wait_until("the work stopped", Duration::from_secs(30), || {
        w.metrics()["pcaplab_watch_in_flight"] == 0.0
    });
    // It stopped: no result, no output, the thief's claim untouched.
    assert_eq!(w.captures("processed"), 0);
    let items = moto.items();
    assert_eq!(items["captures/drop/big.pcap"].status, "-", "{items:?}");
    assert_eq!(moto.keys("results", ""), BTreeSet::new());
    let owner = moto.py(
        "print(ddb.get_item(TableName='PacketCaptures', Key={'s3Id': {'S': 'captures/drop/big.pcap'}})['Item']['lease_owner']['S'])",
        &[],
    );
    assert_eq!(owner.trim(), "thief");

    // The thief dies: its lease runs out, and the capture is claimed again and done.
    moto.py(steal, &["-1000"]);
    wait_until(
        "the capture done after all",
        Duration::from_secs(120),
        || moto.items()["captures/drop/big.pcap"].status == "ok",
    );
    assert_eq!(w.captures("processed"), 1);
    assert_eq!(moto.keys("results", ""), listed_outputs(&moto.items()));
    w.stop("TERM");
}
