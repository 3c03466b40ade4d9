//! The download routes' refusals, against the server on a loopback port over items written
//! here (the downloads themselves, from a real conversion, are in pcaplab-cli's tests/serve.rs):
//! an item without a flows output, a capture on S3 with no AWS configuration, a listed output
//! that is not a file of the dataset layout, an output on S3.

use std::sync::Arc;

use pcaplab_serve::captures::Source;
use pcaplab_serve::sns::{HttpFetch, Verifier};
use pcaplab_serve::{App, Config};
use serde_json::Value;

const FLOW: &str = r#"{"M":{"community_id":{"S":"1:LQU9qZlK+B5F3KDmev6m5PMibrg="},"proto":{"S":"tcp"},
    "src":{"S":"10.0.0.1"},"src_port":{"N":"34855"},"dst":{"S":"10.0.0.2"},"dst_port":{"N":"80"},
    "packets":{"N":"30"},"bytes":{"N":"5700"}}}"#;

/// A local capture converted without flows; one of its outputs is listed as a path outside
/// the layout.
fn local_item() -> String {
    format!(
        r#"{{"Item":{{"s3Id":{{"S":"captures/x.pcap"}},"capture":{{"S":"x.pcap"}},"status":{{"S":"ok"}},
        "flows":{{"N":"1"}},"top_flows":{{"L":[{FLOW}]}},
        "outputs":{{"M":{{"parquet":{{"S":"out/packets/date=2024-03-01/x.pcap.parquet"}},
                          "lab-csv":{{"S":"/etc/passwd"}}}}}}}}}}"#
    )
}

/// An S3 object converted to S3, flows included.
fn s3_item() -> String {
    format!(
        r#"{{"Item":{{"s3Id":{{"S":"bucket-1/in/y.pcap"}},"capture":{{"S":"bucket-1/in/y.pcap"}},
        "etag":{{"S":"\"abc\""}},"status":{{"S":"ok"}},"flows":{{"N":"1"}},"top_flows":{{"L":[{FLOW}]}},
        "outputs":{{"M":{{"flows":{{"S":"s3://bucket-1/flows/date=2024-03-01/bucket-1%2Fin%2Fy.pcap.abc.flows.parquet"}}}}}}}}}}"#
    )
}

async fn get(http: &reqwest::Client, base: &str, path: &str) -> (u16, String) {
    let r = http.get(format!("{base}{path}")).send().await.expect("GET");
    (r.status().as_u16(), r.text().await.expect("body"))
}

fn error(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["error"].as_str().expect("an error message").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_are_refused_with_reasons() {
    let data = tempfile::tempdir().expect("tempdir");
    let items = data.path().join("dynamodb");
    std::fs::create_dir_all(&items).expect("dynamodb/");
    std::fs::write(items.join("x.pcap.json"), local_item()).expect("item");
    std::fs::write(items.join("bucket-1%2Fin%2Fy.pcap.json"), s3_item()).expect("item");
    let fetch = HttpFetch::new(None).expect("fetch");
    let app = App::new(
        Source::Dir(data.path().to_owned()),
        Verifier::new(Arc::new(fetch), Vec::new(), false),
        Config {
            auto_confirm: false,
            aws: None,
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(pcaplab_serve::serve(listener, app, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let flow = "flow=1%3ALQU9qZlK%2BB5F3KDmev6m5PMibrg%3D";

    // No flows output: no links, and the route says what to do.
    let (status, page) = get(&http, &base, "/captures/captures%2Fx.pcap").await;
    assert_eq!(status, 200, "{page}");
    assert!(!page.contains("flow-pcap"), "{page}");
    assert!(page.contains("to download a flow"), "{page}");
    let (status, body) = get(
        &http,
        &base,
        &format!("/api/captures/captures%2Fx.pcap/flows.pcap?{flow}"),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(error(&body).contains("lists no flows output"), "{body}");

    // Listed, but not a dataset file: never served.
    let (status, body) = get(
        &http,
        &base,
        "/api/captures/captures%2Fx.pcap/outputs/lab-csv",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        error(&body).contains("not a file of the dataset layout"),
        "{body}"
    );
    // Listed, laid out, not there: read under --data, named.
    let (status, body) = get(
        &http,
        &base,
        "/api/captures/captures%2Fx.pcap/outputs/parquet",
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        error(&body).contains("packets/date=2024-03-01/x.pcap.parquet"),
        "{body}"
    );

    // On S3 with no AWS configuration: 503, before anything is read.
    let y = "bucket%2D1%2Fin%2Fy%2Epcap";
    let (status, page) = get(&http, &base, &format!("/captures/{y}")).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("class=\"flow-pcap\""), "{page}");
    // S3 outputs are named, not linked.
    assert!(!page.contains("class=\"output\""), "{page}");
    assert!(
        page.contains("<code>s3://bucket-1/flows/date=2024-03-01/"),
        "{page}"
    );
    let (status, body) = get(
        &http,
        &base,
        &format!("/api/captures/{y}/flows.pcap?{flow}"),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(error(&body).contains("no AWS configuration"), "{body}");
    let (status, body) = get(&http, &base, &format!("/api/captures/{y}/outputs/flows")).await;
    assert_eq!(status, 404, "{body}");
    assert!(error(&body).contains("is on S3"), "{body}");
}
