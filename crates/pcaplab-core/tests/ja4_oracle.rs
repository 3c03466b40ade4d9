//! JA4 against FoxIO's published fingerprints of its own test captures.
//!
//! `$PCAPLAB_CORPUS/oracle-ja4/<capture>.json` holds, for each `foxio-ja4__*` capture, the
//! JA4 and JA4_r that FoxIO publishes (FoxIO-LLC/ja4, `python/test/testdata/`): one object per
//! TCP or UDP stream with `src`, `dst`, `srcport`, `dstport` and `JA4.n` / `JA4_r.n`, the n-th
//! ClientHello of the stream (see the corpus README, "JA4 oracle").
//!
//! - **JA4** comes from the packet table (`tls_ja4`), as the pipeline produces it, ClientHellos
//!   followed over TCP segments included: the stream's rows with a `tls_ja4`, in frame order,
//!   must be exactly the stream's `JA4.1`, `JA4.2`, …
//! - **JA4_r** comes from [`pcaplab_core::app::ja4_of`] on each ClientHello of the stream,
//!   which this test gathers itself from the TCP segments (in sequence order, from a segment
//!   that starts a handshake or ChangeCipherSpec record until the ClientHello is whole).
//!
//! Every TCP fingerprint must match. QUIC: see [`FOXIO_RUST_QUIC`]. A QUIC stream in the
//! oracle files (`q` prefix; they list none at present) is checked by its JA4 from the packet table, where pcaplab decrypted the client
//! Initial packets, when pcaplab produced a ClientHello for it, and counted as skipped
//! otherwise — the test prints how many were checked and skipped. (Its JA4_r would need the
//! decrypted ClientHello, which only the packet table's JA4 reflects.)
//!
//! Without `$PCAPLAB_CORPUS` the test says so and passes, unless `PCAPLAB_REQUIRE_ALL` is set.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt8Type, UInt16Type};
use arrow_array::{Array, RecordBatch};
use pcaplab_core::CaptureReader;
use pcaplab_core::app::{AppFields, IPPROTO_TCP, IPPROTO_UDP, Parsed, ja4_of, parse_app};
use pcaplab_core::dissect::{Packet, dissect};
use pcaplab_core::reader::Chunk;

use common::{corpus, decode_file};

/// A direction of a connection: (IP protocol, source, source port, destination, destination
/// port), addresses as text.
type Key = (u8, String, u16, String, u16);

/// Most bytes gathered for one ClientHello (one handshake record of at most 16 KiB).
const MAX_HELLO: usize = 16 * 1024 + 5;

/// The oracle's streams by direction: (JA4 list, JA4_r list) in stream, then ClientHello order.
fn read_oracle(path: &Path) -> BTreeMap<Key, (Vec<String>, Vec<String>)> {
    let text = std::fs::read_to_string(path).expect("read oracle");
    let streams: Vec<serde_json::Value> = serde_json::from_str(&text).expect("oracle JSON");
    let mut by_key: BTreeMap<Key, (Vec<String>, Vec<String>)> = BTreeMap::new();
    let mut streams: Vec<&serde_json::Value> = streams.iter().collect();
    streams.sort_by_key(|s| s["stream"].as_u64());
    for s in streams {
        let text = |k: &str| {
            s[k].as_str()
                .unwrap_or_else(|| panic!("{k} in {s}"))
                .to_string()
        };
        let port = |k: &str| text(k).parse::<u16>().expect("port");
        let mut ja4 = Vec::new();
        let mut raw = Vec::new();
        for n in 1.. {
            let (Some(j), Some(r)) = (s.get(format!("JA4.{n}")), s.get(format!("JA4_r.{n}")))
            else {
                break;
            };
            ja4.push(j.as_str().expect("JA4").to_string());
            raw.push(r.as_str().expect("JA4_r").to_string());
        }
        assert!(!ja4.is_empty(), "a stream without JA4: {s}");
        let proto = if ja4[0].starts_with('q') {
            IPPROTO_UDP
        } else {
            IPPROTO_TCP
        };
        let key = (
            proto,
            text("src"),
            port("srcport"),
            text("dst"),
            port("dstport"),
        );
        let e = by_key.entry(key).or_default();
        e.0.extend(ja4);
        e.1.extend(raw);
    }
    by_key
}

/// The packet table's `tls_ja4` values by direction, in frame order.
fn table_ja4(batches: &[RecordBatch]) -> BTreeMap<Key, Vec<String>> {
    let mut out: BTreeMap<Key, Vec<String>> = BTreeMap::new();
    for b in batches {
        let col = |name: &str| {
            b.column_by_name(name)
                .unwrap_or_else(|| panic!("column {name}"))
        };
        let ja4 = col("tls_ja4").as_string::<i32>();
        let proto = col("ip_proto").as_primitive::<UInt8Type>();
        let src = col("src_ip").as_string::<i32>();
        let dst = col("dst_ip").as_string::<i32>();
        let sp = col("src_port").as_primitive::<UInt16Type>();
        let dp = col("dst_port").as_primitive::<UInt16Type>();
        for i in (0..b.num_rows()).filter(|&i| ja4.is_valid(i)) {
            let key = (
                proto.value(i),
                src.value(i).to_string(),
                sp.value(i),
                dst.value(i).to_string(),
                dp.value(i),
            );
            out.entry(key).or_default().push(ja4.value(i).to_string());
        }
    }
    out
}

/// A ClientHello being gathered: its bytes so far and the next sequence number.
struct Gathering {
    buf: Vec<u8>,
    next_seq: u32,
}

/// JA4_r of every whole ClientHello sent over TCP, by direction, in order.
fn gathered_raw(path: &Path) -> BTreeMap<Key, Vec<String>> {
    let bytes = std::fs::read(path).expect("read capture");
    let mut reader = CaptureReader::new(Box::new(std::io::Cursor::new(bytes))).expect("open");
    let mut out: BTreeMap<Key, Vec<String>> = BTreeMap::new();
    let mut open: BTreeMap<Key, Gathering> = BTreeMap::new();
    let mut chunk = Chunk::default();
    let mut fields = AppFields::default();
    loop {
        chunk.clear();
        let more = matches!(reader.fill(&mut chunk, 4096, 1 << 20), Ok(true));
        for f in &chunk.frames {
            let data = chunk.frame_data(f);
            let mut p = Packet::default();
            dissect(f.link_type, data, &mut p);
            let (Some(ip), Some(sp), Some(dp), Some(seq), Some((off, len))) =
                (p.ip, p.src_port, p.dst_port, p.tcp_seq, p.payload)
            else {
                continue;
            };
            if ip.proto != IPPROTO_TCP || len == 0 {
                continue;
            }
            let payload = &data[off..off + len];
            let key = (IPPROTO_TCP, ip.src.to_string(), sp, ip.dst.to_string(), dp);
            let g = match open.remove(&key) {
                Some(mut g) if g.next_seq == seq => {
                    g.buf.extend_from_slice(payload);
                    g.next_seq = seq.wrapping_add(len as u32);
                    g
                }
                // A retransmission of what was gathered: wait for the next segment.
                Some(g) if seq.wrapping_sub(g.next_seq) > u32::MAX / 2 => {
                    open.insert(key, g);
                    continue;
                }
                // A handshake record, or a ChangeCipherSpec record before one (the second
                // ClientHello after a HelloRetryRequest).
                _ if matches!(payload[0], 0x16 | 0x14) => Gathering {
                    buf: payload.to_vec(),
                    next_seq: seq.wrapping_add(len as u32),
                },
                _ => continue,
            };
            match parse_app(IPPROTO_TCP, sp, dp, &g.buf, &mut fields) {
                Parsed::Partial if g.buf.len() < MAX_HELLO => {
                    open.insert(key, g);
                }
                Parsed::Complete => {
                    if let Some(j) = ja4_of(&g.buf, false) {
                        out.entry(key).or_default().push(j.raw());
                    }
                }
                _ => {}
            }
        }
        if !more {
            break;
        }
    }
    out
}

#[test]
fn ja4_matches_foxio() {
    let Some(dir) = corpus() else { return };
    let oracle_dir = dir.join("oracle-ja4");
    let mut files: Vec<_> = std::fs::read_dir(&oracle_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", oracle_dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no oracle in {}", oracle_dir.display());

    let (mut tcp_ja4, mut tcp_raw, mut quic_checked, mut quic_skipped) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for oracle in &files {
        let capture = oracle
            .file_stem()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let path = dir.join(&capture);
        assert!(path.exists(), "{capture}: the capture is not in the corpus");
        let expected = read_oracle(oracle);
        let ours = table_ja4(&decode_file(&path, 16_384).batches);
        let raws = gathered_raw(&path);
        let none = Vec::new();
        for (key, (ja4, raw)) in &expected {
            let got = ours.get(key).unwrap_or(&none);
            if key.0 == IPPROTO_UDP {
                if got.is_empty() {
                    quic_skipped += ja4.len();
                    continue;
                }
                quic_checked += ja4.len();
            } else {
                let got_raw = raws.get(key).unwrap_or(&none);
                if got_raw == raw {
                    tcp_raw += raw.len();
                } else {
                    failures.push(format!(
                        "{capture} {key:?}: JA4_r\n  FoxIO: {raw:?}\n  ours:  {got_raw:?}"
                    ));
                }
            }
            if got == ja4 {
                if key.0 == IPPROTO_TCP {
                    tcp_ja4 += ja4.len();
                }
            } else {
                failures.push(format!(
                    "{capture} {key:?}: JA4\n  FoxIO: {ja4:?}\n  ours:  {got:?}"
                ));
            }
        }
    }
    eprintln!(
        "JA4 oracle: {} captures; TCP: {tcp_ja4} JA4 and {tcp_raw} JA4_r matched; QUIC: \
         {quic_checked} checked, {quic_skipped} skipped (no ClientHello from pcaplab)",
        files.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(tcp_ja4 > 0 && tcp_raw == tcp_ja4);
}

/// QUIC JA4 fingerprints that FoxIO's own Rust implementation gives for two of the corpus'
/// captures: its test snapshots (FoxIO-LLC/ja4, `rust/ja4/src/snapshots/`,
/// `ja4__insta@chrome-cloudflare-quic-with-secrets.pcapng.snap` and `ja4__insta@tls3.pcapng.snap`,
/// the `transport: udp` streams), since `oracle-ja4/` lists no QUIC stream. (capture, client
/// address, client port, server address, server port, JA4.)
const FOXIO_RUST_QUIC: [(&str, &str, u16, &str, u16, &str); 7] = [
    (
        "foxio-ja4__chrome-cloudflare-quic-with-secrets.pcapng",
        "2001:db8:1::1",
        50280,
        "2606:4700:10::6816:826",
        443,
        "q13d0310h3_55b375c5d22e_cd85d2d88918",
    ),
    (
        "foxio-ja4__tls3.pcapng",
        "192.168.1.169",
        62481,
        "172.253.122.95",
        443,
        "q13d0310h3_55b375c5d22e_cd85d2d88918",
    ),
    (
        "foxio-ja4__tls3.pcapng",
        "192.168.1.169",
        61732,
        "104.21.234.234",
        443,
        "q13d0310h3_55b375c5d22e_cd85d2d88918",
    ),
    (
        "foxio-ja4__tls3.pcapng",
        "192.168.1.169",
        49791,
        "151.101.1.229",
        443,
        "q13d0310h3_55b375c5d22e_cd85d2d88918",
    ),
    (
        "foxio-ja4__tls3.pcapng",
        "192.168.1.169",
        56684,
        "104.17.24.14",
        443,
        "q13d0310h3_55b375c5d22e_cd85d2d88918",
    ),
    (
        "foxio-ja4__tls3.pcapng",
        "192.168.1.169",
        61884,
        "104.21.234.234",
        443,
        "q13d0311h3_55b375c5d22e_3512bcbbc9ec",
    ),
    (
        "foxio-ja4__tls3.pcapng",
        "192.168.1.169",
        58117,
        "142.251.111.94",
        443,
        "q13d0310h3_55b375c5d22e_cd85d2d88918",
    ),
];

/// The JA4 of every QUIC ClientHello in [`FOXIO_RUST_QUIC`], from the packet table (pcaplab
/// decrypting the client Initial packets), is exactly FoxIO's.
#[test]
fn quic_ja4_matches_foxio_rust_snapshots() {
    let Some(dir) = corpus() else { return };
    let mut tables: BTreeMap<&str, BTreeMap<Key, Vec<String>>> = BTreeMap::new();
    let mut failures = Vec::new();
    for (capture, src, sport, dst, dport, ja4) in FOXIO_RUST_QUIC {
        let ours = tables
            .entry(capture)
            .or_insert_with(|| table_ja4(&decode_file(&dir.join(capture), 16_384).batches));
        let key = (IPPROTO_UDP, src.to_string(), sport, dst.to_string(), dport);
        let got = ours.get(&key).cloned().unwrap_or_default();
        if got != [ja4] {
            failures.push(format!("{capture} {key:?}: FoxIO {ja4}, ours {got:?}"));
        }
    }
    eprintln!(
        "QUIC JA4 against FoxIO's Rust snapshots: {} of {} ClientHellos",
        FOXIO_RUST_QUIC.len() - failures.len(),
        FOXIO_RUST_QUIC.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
