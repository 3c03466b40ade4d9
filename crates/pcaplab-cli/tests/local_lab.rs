//! deploy/local: `up.sh` brings up moto's server with the template's resources and the watcher;
//! an upload under `incoming/` gets its outputs, its item and its announcement; `down.sh` stops
//! every process `up.sh` started and leaves nothing behind. The page `up.sh` starts hears the
//! announcement, its signature checked, and lists the capture.
//!
//! Needs `$PCAPLAB_PYTHON` (the project's venv, which up.sh also uses); without it the test
//! prints a loud SKIPPED line, or fails under `$PCAPLAB_REQUIRE_ALL` (as in CI).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use pcaplab_testkit::{
    PRELUDE, emulator_env, fields, free_port, http_get, own_captures, python, run_python,
    wait_until,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn script(name: &str, port: u16, state: &Path) -> Output {
    Command::new("bash")
        .arg(root().join("deploy/local").join(name))
        .env("LAB_PORT", port.to_string())
        .env("LAB_STATE", state)
        .env("PCAPLAB_BIN", env!("CARGO_BIN_EXE_pcaplab"))
        .output()
        .expect("run the lab script")
}

/// Running, not merely a zombie waiting for its reaper.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        !s.lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
    })
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_local_lab_comes_up_converts_an_upload_and_goes_down() {
    let Some(py) = python() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let boto = |body: &str, args: &[&str]| {
        let mut cmd = Command::new(&py);
        emulator_env(&mut cmd, &endpoint, dir.path());
        run_python(&mut cmd, &format!("{PRELUDE}\n{body}"), args)
    };

    let up = script("up.sh", port, &state);
    assert!(up.status.success(), "up.sh failed:\n{}", text(&up));
    assert!(text(&up).contains("The local lab is up"), "{}", text(&up));
    let pids: Vec<u32> = std::fs::read_to_string(state.join("pids"))
        .expect("up.sh records its processes")
        .lines()
        .map(|l| {
            l.split(' ')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("a pid")
        })
        .collect();
    assert_eq!(pids.len(), 3, "moto, the watcher and the page");
    // A second up.sh refuses to start another lab over this one.
    let again = script("up.sh", port, &state);
    assert!(!again.status.success());
    assert!(text(&again).contains("already up"), "{}", text(&again));

    // Announcements, seen through a queue subscribed to the topic.
    boto(
        r#"q = sqs.create_queue(QueueName="announcements")["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
topic = [t["TopicArn"] for t in sns.list_topics()["Topics"] if t["TopicArn"].endswith(":pcaplab")][0]
sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
"#,
        &[],
    );
    let web = own_captures().join("lab-web.pcap");
    let web = web.to_str().expect("utf8 path");
    boto(
        "s3.upload_file(sys.argv[1], 'pcaplab-captures', 'incoming/lab-web.pcap')\n\
         s3.upload_file(sys.argv[1], 'pcaplab-captures', 'elsewhere/lab-web.pcap')",
        &[web],
    );

    let item = || {
        boto(
            "for it in items():\n    emit('item', it['s3Id']['S'], it.get('status', {}).get('S', '-'), it.get('packets', {}).get('N', '-'))",
            &[],
        )
    };
    wait_until(
        "the uploaded capture's item",
        Duration::from_secs(60),
        || !fields(&item(), "item").is_empty(),
    );
    assert_eq!(
        fields(&item(), "item"),
        [["pcaplab-captures/incoming/lab-web.pcap", "ok", "33"]],
        "one item, for the capture under incoming/ only"
    );
    let keys = boto("dump_keys('pcaplab-captures', 'results/')", &[]);
    let keys: Vec<&str> = keys
        .lines()
        .filter_map(|l| l.strip_prefix("key\t"))
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.contains(&"results/csv/lab-web.csv"), "{keys:?}");
    assert!(
        keys.iter()
            .any(|k| k.starts_with("results/packets/date=") && k.ends_with(".parquet")),
        "{keys:?}"
    );
    let announced = boto(
        r#"q = sqs.get_queue_url(QueueName="announcements")["QueueUrl"]
for m in sqs.receive_message(QueueUrl=q, MaxNumberOfMessages=10, WaitTimeSeconds=5).get("Messages", []):
    emit("announced", json.loads(m["Body"])["s3Id"])
"#,
        &[],
    );
    assert_eq!(
        fields(&announced, "announced"),
        [["pcaplab-captures/incoming/lab-web.pcap"]]
    );

    // The page heard the announcement (signature checked) and shows the capture.
    let page: u16 = std::fs::read_to_string(state.join("resources"))
        .expect("up.sh records its resources")
        .lines()
        .find_map(|l| l.strip_prefix("page=http://127.0.0.1:"))
        .and_then(|p| p.parse().ok())
        .expect("the page's port");
    let updates = || -> Value {
        let (status, body) = http_get(page, "/api/updates").expect("the page answers");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("JSON")
    };
    wait_until(
        "the page hears the announcement",
        Duration::from_secs(30),
        || updates()["accepted"] == 1,
    );
    let u = updates();
    assert_eq!(u["rejected"], 0, "{u}");
    assert_eq!(
        u["recent"][0]["announcement"]["s3_id"],
        "pcaplab-captures/incoming/lab-web.pcap"
    );
    let (status, html) = http_get(page, "/").expect("the page");
    assert_eq!(status, 200);
    assert!(
        html.contains("pcaplab-captures/incoming/lab-web.pcap"),
        "{html}"
    );

    let down = script("down.sh", port, &state);
    assert!(down.status.success(), "down.sh failed:\n{}", text(&down));
    for pid in pids {
        assert!(
            !running(pid),
            "process {pid} is still running after down.sh:\n{}",
            text(&down)
        );
    }
    assert!(!state.exists(), "down.sh leaves its state behind");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "moto's port is still open"
    );
}
