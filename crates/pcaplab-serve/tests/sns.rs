//! The SNS endpoint against messages signed here: a CA and certificates made by `openssl` for
//! this run, messages signed with their keys by `openssl dgst` (SignatureVersion 1: SHA-1,
//! 2: SHA-256), and a certificate source that serves those certificates for SNS URLs and
//! records every URL it is asked for.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine as _;
use pcaplab_serve::captures::Source;
use pcaplab_serve::sns::{Fetch, Verifier};
use pcaplab_serve::{App, Config};
use reqwest::Url;
use serde_json::{Value, json};

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:pcaplab";
const CERT_URL: &str = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem";
const EXPIRED_URL: &str = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-old.pem";
const ROGUE_URL: &str = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-rogue.pem";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian's openssl package) runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and certificates it signed with CN sns.amazonaws.com as SNS's have: `signer`
/// (valid), `expired` (its validity ended yesterday), and `rogue` (valid, another key).
struct Pki {
    certs: HashMap<String, Vec<u8>>,
    /// Private keys (PEM files).
    signer: PathBuf,
    expired: PathBuf,
    rogue: PathBuf,
}

fn pki(dir: &Path) -> Pki {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=pcaplab test CA",
            "-days",
            "2",
        ],
    );
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n",
    )
    .expect("write");
    let leaf = |name: &str, days: &str| {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                "/CN=sns.amazonaws.com",
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                days,
                "-out",
                &format!("{name}.pem"),
                // Extensions make it X.509 v3, as SNS's are (webpki refuses v1).
                "-extfile",
                "leaf.ext",
            ],
        );
        (
            std::fs::read(dir.join(format!("{name}.pem"))).expect("cert"),
            dir.join(format!("{name}.key")),
        )
    };
    let (signer_pem, signer) = leaf("signer", "2");
    let (expired_pem, expired) = leaf("expired", "-1");
    let (rogue_pem, rogue) = leaf("rogue", "2");
    let certs = HashMap::from([
        (CERT_URL.to_owned(), signer_pem),
        (EXPIRED_URL.to_owned(), expired_pem),
        (ROGUE_URL.to_owned(), rogue_pem),
    ]);
    Pki {
        certs,
        signer,
        expired,
        rogue,
    }
}

/// Serves the test's certificates; any other URL (a SubscribeURL) answers an empty body.
#[derive(Default)]
struct Certs {
    certs: HashMap<String, Vec<u8>>,
    asked: Mutex<Vec<String>>,
}

#[async_trait]
impl Fetch for Certs {
    async fn get(&self, url: &Url, _limit: usize) -> Result<Vec<u8>, String> {
        self.asked
            .lock()
            .expect("lock")
            .push(url.as_str().to_owned());
        Ok(self.certs.get(url.as_str()).cloned().unwrap_or_default())
    }
}

impl Certs {
    fn asked(&self) -> Vec<String> {
        self.asked.lock().expect("lock").clone()
    }
}

/// The fields SNS signs, in its order, for a message of this shape.
fn string_to_sign(m: &Value) -> String {
    let names: &[&str] = if m["Type"] == "Notification" {
        &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ]
    } else {
        &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ]
    };
    let mut s = String::new();
    for name in names {
        if let Some(v) = m.get(*name).and_then(Value::as_str) {
            s.push_str(&format!("{name}\n{v}\n"));
        }
    }
    s
}

fn sign(m: &mut Value, key: &Path, version: &str, cert_url: &str) {
    m["SignatureVersion"] = json!(version);
    m["SigningCertURL"] = json!(cert_url);
    let dir = key.parent().expect("key's directory");
    std::fs::write(dir.join("message.txt"), string_to_sign(m)).expect("write");
    let digest = if version == "1" { "-sha1" } else { "-sha256" };
    let key = key.to_str().expect("UTF-8 path");
    openssl(
        dir,
        &[
            "dgst",
            digest,
            "-sign",
            key,
            "-out",
            "message.sig",
            "message.txt",
        ],
    );
    let sig = std::fs::read(dir.join("message.sig")).expect("signature");
    m["Signature"] = json!(base64::engine::general_purpose::STANDARD.encode(sig));
}

fn notification(id: &str, subject: Option<&str>, message: &str) -> Value {
    let mut m = json!({
        "Type": "Notification",
        "MessageId": id,
        "TopicArn": TOPIC,
        "Message": message,
        "Timestamp": "2026-11-24T10:00:00.000Z",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",
    });
    if let Some(s) = subject {
        m["Subject"] = json!(s);
    }
    m
}

fn confirmation(id: &str, subscribe_url: &str) -> Value {
    json!({
        "Type": "SubscriptionConfirmation",
        "MessageId": id,
        "TopicArn": TOPIC,
        "Token": format!("token-{id}"),
        "Message": "You have chosen to subscribe to the topic. To confirm, visit the SubscribeURL.",
        "SubscribeURL": subscribe_url,
        "Timestamp": "2026-11-24T10:00:00.000Z",
    })
}

struct Server {
    base: String,
    http: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Server {
    async fn start(
        certs: Arc<Certs>,
        topics: Vec<String>,
        emulator: bool,
        auto_confirm: bool,
    ) -> Server {
        let data = tempfile::tempdir().expect("tempdir");
        let verifier = Verifier::new(certs, topics, emulator);
        let app = App::new(
            Source::Dir(data.keep()),
            verifier,
            Config {
                auto_confirm,
                aws: None,
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(pcaplab_serve::serve(listener, app, async {
            let _ = stopped.await;
        }));
        Server {
            base,
            http: reqwest::Client::new(),
            _stop: stop,
        }
    }

    async fn post(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        kind: Option<&str>,
    ) -> (u16, String) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "text/plain; charset=UTF-8")
            .body(body);
        if let Some(k) = kind {
            req = req.header("x-amz-sns-message-type", k);
        }
        let r = req.send().await.expect("POST");
        (r.status().as_u16(), r.text().await.expect("body"))
    }

    async fn deliver(&self, m: &Value) -> (u16, String) {
        let kind = m["Type"].as_str().map(str::to_owned);
        self.post("/sns", m.to_string(), kind.as_deref()).await
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        (r.status().as_u16(), r.text().await.expect("body"))
    }

    async fn updates(&self) -> Value {
        let (status, body) = self.get("/api/updates").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("JSON")
    }
}

fn setup() -> Option<(tempfile::TempDir, Pki)> {
    if Command::new("openssl").arg("version").output().is_err() {
        pcaplab_testkit::skip("openssl is not installed");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki(dir.path());
    Some((dir, pki))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_are_verified() {
    let Some((_dir, pki)) = setup() else { return };
    let certs = Arc::new(Certs {
        certs: pki.certs.clone(),
        ..Certs::default()
    });
    let server = Server::start(Arc::clone(&certs), Vec::new(), false, false).await;
    let announcement = r#"{"s3Id":"captures/in/a.pcap","status":"ok","packets":33,"bytes":6583}"#;

    // Good messages: SignatureVersion 1 with a subject (and the /update path of the lab),
    // SignatureVersion 2 without one (and without the type header, as moto sends them).
    let mut v1 = notification(
        "m-1",
        Some("pcaplab: a.pcap converted, 33 packets"),
        announcement,
    );
    sign(&mut v1, &pki.signer, "1", CERT_URL);
    let (status, text) = server.deliver(&v1).await;
    assert_eq!(status, 200, "{text}");
    let mut v2 = notification("m-2", None, "plain text\nwith \"quotes\" and ünïcode");
    sign(&mut v2, &pki.signer, "2", CERT_URL);
    assert_eq!(server.post("/update", v2.to_string(), None).await.0, 200);
    // A redelivery is acknowledged but not recorded twice.
    assert_eq!(server.deliver(&v1).await.0, 200);

    let before = server.updates().await;
    assert_eq!(before["accepted"], 2);
    assert_eq!(
        before["recent"][0]["subject"],
        "pcaplab: a.pcap converted, 33 packets"
    );
    assert_eq!(
        before["recent"][0]["announcement"]["s3_id"],
        "captures/in/a.pcap"
    );
    assert_eq!(before["recent"][0]["announcement"]["packets"], 33);
    assert_eq!(
        before["recent"][1]["excerpt"],
        "plain text\nwith \"quotes\" and ünïcode"
    );
    assert!(before["last_updated"].is_string());

    // Every kind of bad delivery: 403, and nothing recorded.
    let mut bad: Vec<(&str, String, Option<&str>)> = Vec::new();
    // (what, body, type header); the reason each gets is checked below.
    let mut tampered = v1.clone();
    tampered["Message"] = json!(announcement.replace("33", "34"));
    bad.push((
        "tampered message",
        tampered.to_string(),
        Some("Notification"),
    ));
    let mut tampered = v1.clone();
    tampered["Subject"] = json!("pcaplab: something else");
    bad.push((
        "tampered subject",
        tampered.to_string(),
        Some("Notification"),
    ));
    let mut tampered = v1.clone();
    tampered["TopicArn"] = json!("arn:aws:sns:us-east-1:123456789012:other");
    bad.push(("tampered topic", tampered.to_string(), Some("Notification")));
    let mut stripped = v1.clone();
    stripped.as_object_mut().expect("object").remove("Subject");
    bad.push((
        "subject removed",
        stripped.to_string(),
        Some("Notification"),
    ));
    let mut downgraded = v2.clone();
    downgraded["SignatureVersion"] = json!("1");
    bad.push(("version swapped", downgraded.to_string(), None));
    let mut forged = notification("m-3", None, announcement);
    sign(&mut forged, &pki.rogue, "2", CERT_URL);
    bad.push((
        "forged: another key, SNS's certificate URL",
        forged.to_string(),
        None,
    ));
    let mut expired = notification("m-4", None, announcement);
    sign(&mut expired, &pki.expired, "2", EXPIRED_URL);
    bad.push(("expired certificate", expired.to_string(), None));
    let not_fetched = [
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-test.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem",
        "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-test.pem",
        "https://sns.amazonaws.com/SimpleNotificationService-test.pem",
    ];
    for url in not_fetched {
        let mut m = notification("m-5", None, announcement);
        sign(&mut m, &pki.signer, "2", url);
        bad.push(("certificate URL not SNS's", m.to_string(), None));
    }
    bad.push((
        "header disagrees",
        v2.to_string(),
        Some("SubscriptionConfirmation"),
    ));
    let mut m = v2.clone();
    m["SignatureVersion"] = json!("3");
    bad.push(("SignatureVersion 3", m.to_string(), None));
    let mut m = v2.clone();
    m["Signature"] = json!("not base64!");
    bad.push(("signature not base64", m.to_string(), None));
    let mut m = v2.clone();
    m["Type"] = json!("Nonsense");
    bad.push(("unknown type", m.to_string(), None));
    let mut m = v2.clone();
    m.as_object_mut().expect("object").remove("Signature");
    bad.push(("no signature", m.to_string(), None));
    bad.push(("not JSON", "Type=Notification".into(), None));
    bad.push(("empty", String::new(), None));
    let reason = |what: &str| match what {
        "tampered message" => "signature does not verify",
        "tampered subject" => "signature does not verify",
        "tampered topic" => "signature does not verify",
        "subject removed" => "signature does not verify",
        "version swapped" => "signature does not verify",
        "forged: another key, SNS's certificate URL" => "signature does not verify",
        "expired certificate" => "outside its validity period",
        "certificate URL not SNS's" => "SigningCertURL",
        "header disagrees" => "x-amz-sns-message-type",
        "SignatureVersion 3" => "SignatureVersion \"3\"",
        "signature not base64" => "not base64",
        "unknown type" => "unknown Type",
        "no signature" => "missing field `Signature`",
        "not JSON" => "not an SNS message",
        "empty" => "not an SNS message",
        other => panic!("no expected reason for {other}"),
    };
    for (what, body, kind) in &bad {
        let (status, text) = server.post("/sns", body.clone(), *kind).await;
        assert_eq!(status, 403, "{what}: {text}");
        assert!(
            text.starts_with("rejected: ") && text.contains(reason(what)),
            "{what}: {text}"
        );
    }
    let after = server.updates().await;
    assert_eq!(after["accepted"], 2);
    assert_eq!(after["recent"], before["recent"]);
    assert_eq!(after["version"], before["version"]);
    assert_eq!(after["rejected"], bad.len());

    // Certificates: fetched once each (cached), and never from a URL that is not SNS's.
    let asked = certs.asked();
    assert_eq!(
        asked.iter().filter(|u| *u == CERT_URL).count(),
        1,
        "{asked:?}"
    );
    assert!(
        asked.iter().all(|u| !not_fetched.contains(&u.as_str())),
        "{asked:?}"
    );
    assert_eq!(
        asked.len(),
        2,
        "the valid and the expired certificate: {asked:?}"
    );

    // A body over the limit never reaches the verifier.
    let (status, _) = server
        .post("/sns", vec![b' '; pcaplab_serve::MAX_BODY + 1], None)
        .await;
    assert_eq!(status, 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_confirmations() {
    let Some((_dir, pki)) = setup() else { return };
    let subscribe_url = "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=x&Token=token-c-1";

    // Without --auto-confirm the token waits at /get_token, as in the lab.
    let certs = Arc::new(Certs {
        certs: pki.certs.clone(),
        ..Certs::default()
    });
    let manual = Server::start(Arc::clone(&certs), Vec::new(), false, false).await;
    assert_eq!(manual.get("/get_token").await.0, 404);
    let mut c = confirmation("c-1", subscribe_url);
    sign(&mut c, &pki.signer, "1", CERT_URL);
    assert_eq!(manual.deliver(&c).await.0, 200);
    let (status, token) = manual.get("/get_token").await;
    assert_eq!(status, 200);
    assert!(token.starts_with("token-c-1\n"), "{token}");
    assert!(token.contains(TOPIC), "{token}");
    assert_eq!(
        certs.asked(),
        [CERT_URL],
        "nothing but the certificate fetched"
    );

    // With it, the verified SubscribeURL is visited.
    let certs = Arc::new(Certs {
        certs: pki.certs.clone(),
        ..Certs::default()
    });
    let auto = Server::start(Arc::clone(&certs), Vec::new(), false, true).await;
    assert_eq!(auto.deliver(&c).await.0, 200);
    assert_eq!(certs.asked(), [CERT_URL, subscribe_url]);
    assert_eq!(auto.get("/get_token").await.0, 404);

    // A signed confirmation whose SubscribeURL is not SNS's is refused and not visited; a
    // tampered one is refused.
    let mut elsewhere = confirmation("c-2", "https://evil.example/?Action=ConfirmSubscription");
    sign(&mut elsewhere, &pki.signer, "2", CERT_URL);
    assert_eq!(auto.deliver(&elsewhere).await.0, 403);
    let mut tampered = c.clone();
    tampered["Token"] = json!("token-other");
    tampered["MessageId"] = json!("c-3");
    assert_eq!(auto.deliver(&tampered).await.0, 403);
    assert_eq!(certs.asked(), [CERT_URL, subscribe_url]);
    assert_eq!(auto.updates().await["rejected"], 2);
}

/// A capture announced twice — two SNS messages, as when a redelivered notification is
/// converted again or a publish whose answer was lost is retried — is listed once on the page,
/// as its latest announcement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_announced_twice_is_listed_once() {
    let Some((_dir, pki)) = setup() else { return };
    let certs = Arc::new(Certs {
        certs: pki.certs.clone(),
        ..Certs::default()
    });
    let server = Server::start(certs, Vec::new(), false, false).await;
    let a = |packets: u32| {
        format!(
            r#"{{"s3Id":"captures/in/a b.pcap","status":"ok","packets":{packets},"bytes":6583}}"#
        )
    };
    let b = r#"{"s3Id":"captures/in/b.pcap","status":"damaged","packets":7,"bytes":900}"#;
    for (id, message) in [("m-1", a(33)), ("m-2", b.to_owned()), ("m-3", a(34))] {
        let mut m = notification(id, Some("pcaplab: converted"), &message);
        sign(&mut m, &pki.signer, "2", CERT_URL);
        let (status, text) = server.deliver(&m).await;
        assert_eq!(status, 200, "{text}");
    }
    let updates = server.updates().await;
    assert_eq!(updates["accepted"], 3);
    let recent: Vec<(String, String)> = updates["recent"]
        .as_array()
        .expect("recent")
        .iter()
        .map(|u| {
            (
                u["announcement"]["s3_id"]
                    .as_str()
                    .unwrap_or("-")
                    .to_owned(),
                u["message_id"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        recent,
        [
            ("captures/in/b.pcap".to_owned(), "m-2".to_owned()),
            ("captures/in/a b.pcap".to_owned(), "m-3".to_owned())
        ]
    );
    let (status, page) = server.get("/").await;
    assert_eq!(status, 200);
    assert_eq!(
        page.matches("captures%2Fin%2Fa%20b%2Epcap").count(),
        1,
        "{page}"
    );
    assert!(page.contains("34"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_and_emulator_subjects() {
    let Some((_dir, pki)) = setup() else { return };
    let certs = Arc::new(Certs {
        certs: pki.certs.clone(),
        ..Certs::default()
    });

    // Only the accepted topic gets in.
    let server = Server::start(Arc::clone(&certs), vec![TOPIC.to_owned()], false, false).await;
    let mut other = notification("t-1", None, "x");
    other["TopicArn"] = json!("arn:aws:sns:us-east-1:123456789012:other");
    sign(&mut other, &pki.signer, "2", CERT_URL);
    let (status, text) = server.deliver(&other).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("not one this server accepts"), "{text}");
    let mut ours = notification("t-2", None, "x");
    sign(&mut ours, &pki.signer, "2", CERT_URL);
    assert_eq!(server.deliver(&ours).await.0, 200);

    // moto signs without the Subject line. Against real SNS that is a tampered message; with
    // an endpoint override it is accepted, the unsigned subject dropped.
    let mut moto_like = notification("t-3", None, "x");
    sign(&mut moto_like, &pki.signer, "2", CERT_URL);
    moto_like["Subject"] = json!("unsigned subject");
    assert_eq!(server.deliver(&moto_like).await.0, 403);
    let emulated = Server::start(Arc::clone(&certs), Vec::new(), true, false).await;
    assert_eq!(emulated.deliver(&moto_like).await.0, 200);
    let updates = emulated.updates().await;
    assert_eq!(updates["recent"][0]["message_id"], "t-3");
    assert!(updates["recent"][0]["subject"].is_null(), "{updates}");
    // Still nothing else is forgiven there.
    let mut tampered = moto_like.clone();
    tampered["Message"] = json!("y");
    tampered["MessageId"] = json!("t-4");
    assert_eq!(emulated.deliver(&tampered).await.0, 403);
}
