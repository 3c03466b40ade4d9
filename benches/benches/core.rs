//! Criterion benchmarks of the core, in bytes of capture per second.
//!
//! Input: `$PCAPLAB_BENCH_INPUT`, else the corpus' pcap-parser__wireshark_samples-test.pcapng
//! (`$PCAPLAB_CORPUS`), else the project's own captures/lab-web.pcap — read into memory once,
//! so that storage is not measured.
//!
//! The `app` group times the application parsers on single messages built here, in time per
//! message: a DNS query, a DNS response with compressed names, a TLS ClientHello, an HTTP
//! request.

use std::io::{Cursor, Write};
use std::path::PathBuf;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pcaplab_core::app::{AppFields, IPPROTO_TCP, IPPROTO_UDP, app_fields};
use pcaplab_core::convert::{DEFAULT_CHUNK_BYTES, DEFAULT_CHUNK_FRAMES};
use pcaplab_core::reader::Chunk;
use pcaplab_core::{CaptureReader, Engine, Outputs, decode_chunk};

fn input() -> (String, Vec<u8>) {
    let candidates = [
        std::env::var_os("PCAPLAB_BENCH_INPUT").map(PathBuf::from),
        std::env::var_os("PCAPLAB_CORPUS")
            .map(|d| PathBuf::from(d).join("pcap-parser__wireshark_samples-test.pcapng")),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../captures/lab-web.pcap")),
    ];
    for p in candidates.into_iter().flatten() {
        if let Ok(bytes) = std::fs::read(&p) {
            return (p.display().to_string(), bytes);
        }
    }
    panic!("no benchmark input found: set PCAPLAB_BENCH_INPUT or PCAPLAB_CORPUS");
}

/// A writer that only counts, so that the benchmark measures encoding, not storage.
struct Discard(u64);

impl Write for Discard {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Frame `bytes` into chunks of the engine's default size; sum `f` over them.
fn for_each_chunk(bytes: &[u8], mut f: impl FnMut(&Chunk) -> usize) -> usize {
    let mut r = CaptureReader::new(Box::new(Cursor::new(bytes.to_vec()))).expect("open");
    let mut total = 0;
    loop {
        let mut chunk = Chunk::default();
        let more = r
            .fill(&mut chunk, DEFAULT_CHUNK_FRAMES, DEFAULT_CHUNK_BYTES)
            .expect("read");
        total += f(&chunk);
        if !more {
            return total;
        }
    }
}

fn benches(c: &mut Criterion) {
    let (name, bytes) = input();
    eprintln!("benchmark input: {name} ({} bytes)", bytes.len());
    let mut g = c.benchmark_group("core");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.sample_size(20);

    g.bench_function("frame", |b| {
        b.iter(|| for_each_chunk(&bytes, |c| c.frames.len()))
    });

    g.bench_function("frame+dissect+columns (1 thread)", |b| {
        b.iter(|| {
            for_each_chunk(&bytes, |c| {
                decode_chunk("bench", c).expect("decode").batch.num_rows()
            })
        })
    });

    for jobs in [1, 2] {
        let engine = Engine::builder().jobs(jobs).build().expect("engine");
        for (label, parquet, csv) in [("parquet", true, false), ("csv", false, true)] {
            g.bench_function(format!("convert {label} ({jobs} jobs)"), |b| {
                b.iter(|| {
                    let mut outputs = Outputs::default();
                    if parquet {
                        outputs.parquet = Some(Box::new(Discard(0)));
                    }
                    if csv {
                        outputs.csv = Some(Box::new(Discard(0)));
                    }
                    engine
                        .convert("bench", Box::new(Cursor::new(bytes.clone())), outputs)
                        .expect("convert")
                        .summary
                        .packets
                })
            });
        }
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// Single application messages
// ---------------------------------------------------------------------------------------------

fn push_name(buf: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        buf.push(label.len() as u8);
        buf.extend_from_slice(label.as_bytes());
    }
    buf.push(0);
}

fn dns_header(flags: u16, qd: u16, an: u16) -> Vec<u8> {
    [0x1234, flags, qd, an, 0, 0]
        .iter()
        .flat_map(|v: &u16| v.to_be_bytes())
        .collect()
}

/// A query for www.example.com A.
fn dns_query() -> Vec<u8> {
    let mut q = dns_header(0x0100, 1, 0);
    push_name(&mut q, "www.example.com");
    q.extend_from_slice(&[0, 1, 0, 1]);
    q
}

/// Resource record whose owner is a compression pointer; returns the rdata's offset.
fn push_rr(buf: &mut Vec<u8>, owner: u16, rtype: u16, rdata: &[u8]) -> u16 {
    buf.extend_from_slice(&(0xc000 | owner).to_be_bytes());
    buf.extend_from_slice(&rtype.to_be_bytes());
    buf.extend_from_slice(&[0, 1, 0, 0, 0x0e, 0x10]);
    buf.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    let at = buf.len() as u16;
    buf.extend_from_slice(rdata);
    at
}

/// www.example.com A: CNAME www.cdn.example.net, CNAME edge.cdn.example.net, 3 A, 2 AAAA
/// (every name after the first compressed).
fn dns_response() -> Vec<u8> {
    let mut r = dns_header(0x8180, 1, 7);
    push_name(&mut r, "www.example.com");
    r.extend_from_slice(&[0, 1, 0, 1]);
    let mut cname = Vec::new();
    push_name(&mut cname, "www.cdn.example.net");
    let cdn = push_rr(&mut r, 12, 5, &cname) + 4; // "cdn.example.net"
    let mut edge = b"\x04edge".to_vec();
    edge.extend_from_slice(&(0xc000 | cdn).to_be_bytes());
    let edge = push_rr(&mut r, cdn - 4, 5, &edge);
    for a in [[93, 184, 216, 34], [93, 184, 216, 35], [93, 184, 216, 36]] {
        push_rr(&mut r, edge, 1, &a);
    }
    for last in [0x46u8, 0x47] {
        let mut v6 = [
            0x26, 0x06, 0x28, 0, 0x02, 0x20, 0, 1, 0x02, 0x48, 0x18, 0x93, 0x25, 0xc8, 0x19, 0,
        ];
        v6[15] = last;
        push_rr(&mut r, edge, 28, &v6);
    }
    r
}

fn tls_ext(t: u16, data: &[u8]) -> Vec<u8> {
    let mut v = t.to_be_bytes().to_vec();
    v.extend_from_slice(&(data.len() as u16).to_be_bytes());
    v.extend_from_slice(data);
    v
}

fn u16_list(len_bytes: usize, values: &[u16]) -> Vec<u8> {
    let body: Vec<u8> = values.iter().flat_map(|v| v.to_be_bytes()).collect();
    let mut v = if len_bytes == 1 {
        vec![body.len() as u8]
    } else {
        (body.len() as u16).to_be_bytes().to_vec()
    };
    v.extend_from_slice(&body);
    v
}

/// A Chrome-like ClientHello (TLS 1.3, GREASE, SNI www.example.com) in one record.
fn client_hello() -> Vec<u8> {
    let host = b"www.example.com";
    let mut sni = vec![0];
    sni.extend_from_slice(&(host.len() as u16).to_be_bytes());
    sni.extend_from_slice(host);
    let mut sni_list = (sni.len() as u16).to_be_bytes().to_vec();
    sni_list.extend_from_slice(&sni);
    let mut e = Vec::new();
    e.extend(tls_ext(0x1a1a, &[]));
    e.extend(tls_ext(0, &sni_list));
    e.extend(tls_ext(23, &[]));
    e.extend(tls_ext(0xff01, &[0]));
    e.extend(tls_ext(10, &u16_list(2, &[0x2a2a, 29, 23, 24])));
    e.extend(tls_ext(11, &[1, 0]));
    e.extend(tls_ext(35, &[]));
    e.extend(tls_ext(16, b"\x00\x0c\x02h2\x08http/1.1"));
    e.extend(tls_ext(13, &u16_list(2, &[0x0403, 0x0804, 0x0401])));
    e.extend(tls_ext(43, &u16_list(1, &[0x3a3a, 0x0304, 0x0303])));
    let mut ks = vec![0, 36, 0, 29, 0, 32];
    ks.extend_from_slice(&[0x33; 32]);
    e.extend(tls_ext(51, &ks));
    e.extend(tls_ext(45, &[1, 1]));
    e.extend(tls_ext(21, &[0; 120]));
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x11; 32]);
    body.push(32);
    body.extend_from_slice(&[0x22; 32]);
    body.extend_from_slice(&u16_list(
        2,
        &[0x0a0a, 0x1301, 0x1302, 0xc02b, 0xc02f, 0x009c],
    ));
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&(e.len() as u16).to_be_bytes());
    body.extend_from_slice(&e);
    let len = (body.len() as u32).to_be_bytes();
    let mut hs = vec![1, len[1], len[2], len[3]];
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

const HTTP_GET: &[u8] = b"GET /index.html?q=1 HTTP/1.1\r\nHost: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: */*\r\nAccept-Encoding: gzip\r\n\r\n";

fn app_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("app");
    g.throughput(Throughput::Elements(1));
    let mut out = AppFields::default();
    let cases: [(&str, u8, u16, u16, Vec<u8>); 4] = [
        ("dns query", IPPROTO_UDP, 50000, 53, dns_query()),
        (
            "dns response (7 answers)",
            IPPROTO_UDP,
            53,
            50000,
            dns_response(),
        ),
        ("tls client hello", IPPROTO_TCP, 50000, 443, client_hello()),
        ("http request", IPPROTO_TCP, 50000, 80, HTTP_GET.to_vec()),
    ];
    for (name, proto, sp, dp, payload) in &cases {
        assert!(
            app_fields(*proto, *sp, *dp, payload, &mut out),
            "{name}: no fields"
        );
        g.bench_function(*name, |b| {
            b.iter(|| {
                app_fields(
                    black_box(*proto),
                    black_box(*sp),
                    black_box(*dp),
                    black_box(payload),
                    &mut out,
                )
            })
        });
    }
    g.finish();
}

criterion_group!(core, benches, app_benches);
criterion_main!(core);
