//! The threaded pipeline: damaged captures keep what came before the damage, outputs do not
//! depend on the number of threads or the chunk size, and Parquet reads back as written.

mod common;

use std::io::Cursor;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pcaplab_core::{ConvertError, Engine, Outputs, ReadError, Report};

use common::{corpus, read_parquet};

struct Converted {
    report: Result<Report, ConvertError>,
    parquet: Vec<u8>,
    csv: Vec<u8>,
    lab_csv: Vec<u8>,
    flows: Vec<u8>,
    flows_csv: Vec<u8>,
}

fn convert(engine: &Engine, name: &str, bytes: Vec<u8>) -> Converted {
    convert_to(engine, name, bytes, true)
}

/// [`convert`], with the packet outputs (Parquet, CSV, lab CSV) or without them (`packets`
/// false: only the flow outputs, whose bytes are then the only ones written).
fn convert_to(engine: &Engine, name: &str, bytes: Vec<u8>, packets: bool) -> Converted {
    let (mut parquet, mut csv, mut lab_csv) = (Vec::new(), Vec::new(), Vec::new());
    let (mut flows, mut flows_csv) = (Vec::new(), Vec::new());
    fn packet_output(on: bool, out: &mut Vec<u8>) -> Option<Box<dyn std::io::Write + Send + '_>> {
        on.then(|| Box::new(out) as Box<dyn std::io::Write + Send + '_>)
    }
    let report = engine.convert(
        name,
        Box::new(Cursor::new(bytes)),
        Outputs {
            parquet: packet_output(packets, &mut parquet),
            csv: packet_output(packets, &mut csv),
            lab_csv: packet_output(packets, &mut lab_csv),
            flows: Some(Box::new(&mut flows)),
            flows_csv: Some(Box::new(&mut flows_csv)),
            flow_parts: None,
            track_flows: true,
            counts: Default::default(),
        },
    );
    Converted {
        report,
        parquet,
        csv,
        lab_csv,
        flows,
        flows_csv,
    }
}

/// The flow CSV's header and its rows sorted: flows retire in an order that depends on where
/// chunks end, their set does not.
fn sorted_lines(csv: &[u8]) -> Vec<String> {
    let text = String::from_utf8(csv.to_vec()).expect("utf8");
    let mut lines = text.lines().map(str::to_owned);
    let header = lines.next().expect("header");
    let mut rows: Vec<String> = lines.collect();
    rows.sort();
    rows.insert(0, header);
    rows
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

fn engine(jobs: usize, chunk_frames: usize) -> Engine {
    Engine::builder()
        .jobs(jobs)
        .chunk_frames(chunk_frames)
        .build()
        .expect("engine")
}

#[test]
fn damaged_corpus_captures_keep_the_packets_before_the_damage() {
    let Some(dir) = corpus() else { return };
    // (file, packets before the damage, byte offset of the damage)
    let damaged = [
        (
            "suricata-verify__bug-1450-04__tls_DER-incomplete-header.pcap",
            6,
            5035,
        ),
        ("suricata-verify__bug-6875-01__fuzz.pcap", 1, 228),
        ("scapy__bad_rsn_parsing_overrides_ssid.pcap", 1, 359),
        ("libpcap__shb-option-too-long.pcapng", 0, 52),
    ];
    let e = engine(2, 2);
    for (file, packets, offset) in damaged {
        let c = convert(&e, file, std::fs::read(dir.join(file)).expect("read"));
        let report = c.report.unwrap_or_else(|e| panic!("{file}: {e}"));
        match &report.damage {
            Some(ReadError::Damaged { offset: o, reason }) => {
                assert_eq!(*o, offset, "{file}: {reason}");
                assert!(!reason.is_empty());
            }
            other => panic!("{file}: expected damage, got {other:?}"),
        }
        assert_eq!(report.summary.packets, packets, "{file}");
        // The outputs are complete files holding exactly those packets.
        assert_eq!(rows(&read_parquet(c.parquet)), packets as usize, "{file}");
        let csv_lines = c.csv.iter().filter(|&&b| b == b'\n').count();
        assert_eq!(csv_lines, packets as usize + 1, "{file}");
        assert!(c.lab_csv.starts_with(b"src,dst,len,proto\n"));
    }
}

#[test]
fn unreadable_corpus_files_are_clear_errors() {
    let Some(dir) = corpus() else { return };
    let e = engine(1, 64);
    let open_error =
        |file: &str| match convert(&e, "x", std::fs::read(dir.join(file)).expect("read")).report {
            Err(ConvertError::Open { source, .. }) => source,
            other => panic!("{file}: {other:?}"),
        };
    match open_error("libpcap__pcap-invalid-version-1.pcap") {
        ReadError::Unsupported { reason } => assert!(reason.contains("version 1.4"), "{reason}"),
        other => panic!("{other:?}"),
    }
    match open_error("pcap-parser__err-eof.bin") {
        ReadError::NotACapture { magic } => assert_eq!(magic, "06 00 00 00 a0 00 00 00"),
        other => panic!("{other:?}"),
    }
    // Truncated compressed input: an I/O (decompression) error, still no panic.
    let gz = std::fs::read(dir.join("zeek__iso-download.pcap.gz")).expect("read");
    let c = convert(&e, "x", gz[..gz.len() / 2].to_vec());
    let report = c.report.expect("opens");
    assert!(
        matches!(
            report.damage,
            Some(ReadError::Io { .. }) | Some(ReadError::Damaged { .. })
        ),
        "{:?}",
        report.damage
    );
    assert!(report.summary.packets > 0);
    assert_eq!(
        rows(&read_parquet(c.parquet)),
        report.summary.packets as usize
    );
}

#[test]
fn every_corpus_file_converts_without_panic() {
    let Some(dir) = corpus() else { return };
    let e = engine(2, 7);
    let mut converted = 0;
    for file in common::manifest_files(&dir) {
        let c = convert(&e, &file, std::fs::read(dir.join(&file)).expect("read"));
        if let Ok(report) = c.report {
            assert_eq!(
                rows(&read_parquet(c.parquet)),
                report.summary.packets as usize,
                "{file}"
            );
            converted += 1;
        }
    }
    assert!(converted >= 68, "{converted}");
}

/// Without a packet output the rows are not built (`Rows::Skip`): on every corpus capture the
/// flows (their Parquet, byte for byte) and the statistics must be those of a conversion that
/// builds them, and a capture that fails must fail alike.
#[test]
fn without_a_packet_output_the_flows_and_statistics_are_the_same() {
    let Some(dir) = corpus() else { return };
    let e = engine(2, 7);
    let mut compared = 0;
    for file in common::manifest_files(&dir) {
        let bytes = std::fs::read(dir.join(&file)).expect("read");
        let with_rows = convert(&e, &file, bytes.clone());
        let without = convert_to(&e, &file, bytes, false);
        match (with_rows.report, without.report) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.summary, b.summary, "{file}");
                assert_eq!(
                    a.damage.map(|d| d.to_string()),
                    b.damage.map(|d| d.to_string()),
                    "{file}"
                );
                assert!(
                    without.flows == with_rows.flows,
                    "{file}: the flow Parquet differs"
                );
                compared += 1;
            }
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{file}"),
            (a, b) => panic!("{file}: with rows {a:?}, without {b:?}"),
        }
    }
    assert!(compared >= 68, "{compared}");
}

/// The application columns: a message followed over TCP segments lands on the segment that
/// completes it when both are in one chunk, on its first segment otherwise.
const APP_COLUMNS: [&str; 19] = [
    "dns_qname",
    "dns_qtype",
    "dns_rcode",
    "dns_answers",
    "tls_sni",
    "tls_ja3",
    "tls_ja4",
    "tls_alpn",
    "tls_version",
    "http_method",
    "http_host",
    "http_uri",
    "http_user_agent",
    "http_status",
    "http_content_type",
    "ssh_banner",
    "dhcp_msg_type",
    "dhcp_hostname",
    "dhcp_addr",
];

fn project(batch: &RecordBatch, app: bool) -> RecordBatch {
    let keep: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| APP_COLUMNS.contains(&batch.schema().field(i).name().as_str()) == app)
        .collect();
    batch.project(&keep).expect("project")
}

/// One CSV line per row of `batch`.
fn lines(batch: &RecordBatch) -> Vec<String> {
    let csv = pcaplab_core::encode::encode_csv(batch).expect("csv");
    String::from_utf8(csv)
        .expect("utf8")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Sorted flow rows (of a flow Parquet file) without `server_name` and `service`, which follow
/// the application fields.
fn flows_without_names(parquet: &[u8]) -> Vec<String> {
    use pcaplab_core::flows::col;
    let mut rows = Vec::new();
    for b in read_parquet(parquet.to_vec()) {
        let keep: Vec<usize> = (0..b.num_columns())
            .filter(|&i| {
                ![col::SERVER_NAME, col::SERVICE].contains(&b.schema().field(i).name().as_str())
            })
            .collect();
        rows.extend(lines(&b.project(&keep).expect("project")));
    }
    rows.sort();
    rows
}

#[test]
fn output_does_not_depend_on_threads_or_chunking() {
    let Some(dir) = corpus() else { return };
    let bytes = std::fs::read(dir.join("pcapplusplus__many-protocols.pcap")).expect("read");
    let a = convert(&engine(1, 1 << 20), "many", bytes.clone());
    let a2 = convert(&engine(2, 1 << 20), "many", bytes.clone());
    let b = convert(&engine(2, 97), "many", bytes.clone());
    let c = convert(
        &Engine::builder()
            .jobs(2)
            .chunk_frames(13)
            .slots(1)
            .build()
            .expect("engine"),
        "many",
        bytes,
    );
    // Threads: the same bytes.
    assert_eq!(a.csv, a2.csv);
    assert_eq!(a.flows_csv, a2.flows_csv);
    assert_eq!(
        a.report.as_ref().expect("a").summary,
        a2.report.as_ref().expect("a2").summary
    );
    let concat = |v: &[RecordBatch]| {
        arrow_select::concat::concat_batches(&v[0].schema(), v).expect("concat")
    };
    let (pa, pb, pc) = (
        concat(&read_parquet(a.parquet)),
        concat(&read_parquet(b.parquet)),
        concat(&read_parquet(c.parquet)),
    );
    assert_eq!(pa.num_rows(), 4709);
    // Chunking: every column but the application fields is the same.
    assert_eq!(project(&pa, false), project(&pb, false));
    assert_eq!(project(&pa, false), project(&pc, false));
    assert_eq!(a.lab_csv, b.lab_csv);
    assert_eq!(a.lab_csv, c.lab_csv);
    // Application fields differ only where a chunk boundary cut a followed message: its first
    // segment (row r) holds what it gave, where the one-chunk run has it on the completing
    // segment (row r' > r, in another chunk).
    let whole = lines(&project(&pa, true));
    let mut cut = 0;
    for (chunked, size) in [(&pb, 97), (&pc, 13)] {
        let chunked = lines(&project(chunked, true));
        let empty = ",".repeat(APP_COLUMNS.len() - 1);
        let (mut firsts, mut completing) = (Vec::new(), Vec::new());
        for (r, (w, c)) in whole.iter().zip(&chunked).enumerate() {
            if w == c {
                continue;
            }
            match (*w == empty, *c == empty) {
                (true, false) => firsts.push(r),
                (false, true) => completing.push(r),
                _ => panic!("row {r} differs in its fields: {w} / {c}"),
            }
        }
        assert_eq!(firsts.len(), completing.len(), "{firsts:?} {completing:?}");
        for (r, done) in firsts.into_iter().zip(completing) {
            assert!(r < done, "rows {r}, {done}");
            assert_ne!(
                r / size,
                done / size,
                "rows {r} and {done} are in one chunk of {size}"
            );
            cut += 1;
        }
    }
    assert!(
        cut >= 1,
        "the 13-frame chunks cut no message: the check above checked nothing"
    );
    let flows = sorted_lines(&a.flows_csv);
    assert!(flows.len() > 100, "{}", flows.len());
    let unnamed = flows_without_names(&a.flows);
    assert_eq!(unnamed.len(), flows.len() - 1);
    assert_eq!(unnamed, flows_without_names(&b.flows));
    assert_eq!(unnamed, flows_without_names(&c.flows));
    let fa = read_parquet(a.flows);
    assert_eq!(rows(&fa), flows.len() - 1);
    let (sa, sc) = (
        a.report
            .as_ref()
            .expect("a")
            .summary
            .flows
            .clone()
            .expect("flows"),
        c.report
            .as_ref()
            .expect("c")
            .summary
            .flows
            .clone()
            .expect("flows"),
    );
    assert_eq!(sa.flows, sc.flows);
    assert_eq!(sa.flows as usize, flows.len() - 1);
    let top = |s: &pcaplab_core::FlowStats| -> Vec<_> {
        s.top
            .iter()
            .map(|f| (f.key, f.seg.first_frame, f.bytes()))
            .collect()
    };
    assert_eq!(top(&sa), top(&sc));
    let all = pb;
    // File order: frame numbers 1..=n.
    let frames = all
        .column_by_name("frame_number")
        .expect("col")
        .as_primitive::<UInt64Type>();
    assert!(frames.values().iter().copied().eq(1..=4709));
    assert_eq!(a.report.expect("ok").summary, b.report.expect("ok").summary);
}

/// The packet table's row groups span several chunks, decoded on different threads: the rows
/// are the ones one chunk per row group gives, in file order, in row groups of whole chunks.
#[test]
fn parquet_row_groups_span_chunks_in_file_order() {
    let Some(dir) = corpus() else { return };
    let bytes = std::fs::read(dir.join("pcapplusplus__many-protocols.pcap")).expect("read");
    let build = |jobs, slots, row_group_frames| {
        Engine::builder()
            .jobs(jobs)
            .chunk_frames(13)
            .row_group_frames(row_group_frames)
            .slots(slots)
            .build()
            .expect("engine")
    };
    let one = convert(&build(1, 1, 13), "many", bytes.clone());
    let one_rows = read_parquet(one.parquet);
    let concat = |v: &[RecordBatch]| {
        arrow_select::concat::concat_batches(&v[0].schema(), v).expect("concat")
    };
    let expected = concat(&one_rows);
    assert_eq!(expected.num_rows(), 4709);
    // 7 chunks of 13 frames (91 rows) per row group; 20 (or 29) is not a multiple of 13.
    for (jobs, slots, frames, group_rows) in [(2, 4, 91, 91), (2, 1, 91, 91), (2, 3, 20, 13)] {
        let c = convert(&build(jobs, slots, frames), "many", bytes.clone());
        let report = c.report.expect("converts");
        assert_eq!(report.summary.packets, 4709);
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(c.parquet)).expect("valid");
        let sizes: Vec<i64> = reader
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows())
            .collect();
        let full = 4709 / group_rows;
        assert_eq!(sizes.len(), full + 1, "{jobs} jobs, {frames} frames");
        assert!(
            sizes[..full].iter().all(|&n| n == group_rows as i64),
            "{sizes:?}"
        );
        assert_eq!(sizes[full], (4709 % group_rows) as i64);
        let rows: Vec<RecordBatch> = reader
            .build()
            .expect("reader")
            .map(|b| b.expect("batch"))
            .collect();
        assert_eq!(concat(&rows), expected, "{jobs} jobs, {frames} frames");
        assert_eq!(c.csv, one.csv);
    }
}

/// A Parquet output that fails mid-way is reported, and every slot comes back: row groups that
/// were still being written or waiting let their chunks go.
#[test]
fn a_failing_parquet_output_gives_every_slot_back() {
    struct FailsAfter(usize);
    impl std::io::Write for FailsAfter {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if b.len() > self.0 {
                return Err(std::io::Error::other("disk full"));
            }
            self.0 -= b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let Some(dir) = corpus() else { return };
    let bytes = std::fs::read(dir.join("pcapplusplus__many-protocols.pcap")).expect("read");
    let e = Engine::builder()
        .jobs(2)
        .chunk_frames(13)
        .row_group_frames(39)
        .slots(3)
        .build()
        .expect("engine");
    for room in [0, 100, 20_000] {
        let r = e.convert(
            "m",
            Box::new(Cursor::new(bytes.clone())),
            Outputs {
                parquet: Some(Box::new(FailsAfter(room))),
                ..Outputs::default()
            },
        );
        match r {
            Err(ConvertError::Write { format, .. }) => assert_eq!(format, "parquet", "{room}"),
            other => panic!("{room}: {other:?}"),
        }
    }
    let ok = convert(
        &e,
        "m2",
        std::fs::read(dir.join("tcpdump__pptp.pcap")).expect("read"),
    );
    assert_eq!(ok.report.expect("ok").summary.packets, 23);
}

/// IP fragments are reassembled in file order before chunks are handed out, so a datagram
/// whose fragments fall into different chunks (here: down to one frame per chunk) decodes the
/// same, on any number of threads: every column, every flow and the summary are identical.
#[test]
fn fragments_do_not_depend_on_threads_or_chunking() {
    let Some(dir) = corpus() else { return };
    let mut reassembled = 0;
    for (file, datagrams) in [
        // 11 in-order IPv4 fragments of an HTTP GET.
        ("pcapplusplus__frag_http_req.pcap", 1),
        // Out of order, overlapping.
        ("zeek__fragmented-4.pcap", 1),
        // IPv6 fragment headers (a DNS response).
        ("zeek__ipv6-fragmented-dns.pcap", 1),
        // A GTP-U tunnel packet in two outer fragments.
        ("zeek__gtp_ext_header.pcap", 1),
        // 1024 fragments inside GRE of one maximum-size (65,535-byte) datagram.
        (
            "suricata-verify__bug-6942-6887-defrag-eth-ip-gre-ppp-ip-udp-data__eth-ip-gre-ppp-max-ip-packet.pcap",
            1,
        ),
    ] {
        let bytes = std::fs::read(dir.join(file)).expect("read");
        let whole = convert(&engine(1, 1 << 20), file, bytes.clone());
        let summary = whole.report.as_ref().expect(file).summary.clone();
        assert_eq!(summary.fragments.reassembled, datagrams, "{file}");
        reassembled += summary.fragments.reassembled;
        let parquet = read_parquet(whole.parquet.clone());
        for (jobs, chunk) in [(2, 1), (2, 2), (1, 3), (2, 7)] {
            let cut = convert(
                &Engine::builder()
                    .jobs(jobs)
                    .chunk_frames(chunk)
                    .slots(2)
                    .build()
                    .expect("engine"),
                file,
                bytes.clone(),
            );
            let what = format!("{file}, {jobs} jobs, chunks of {chunk}");
            assert_eq!(cut.report.as_ref().expect(&what).summary, summary, "{what}");
            assert_eq!(cut.csv, whole.csv, "{what}");
            assert_eq!(cut.flows_csv, whole.flows_csv, "{what}");
            let concat = |v: &[RecordBatch]| {
                arrow_select::concat::concat_batches(&v[0].schema(), v).expect("concat")
            };
            assert_eq!(
                concat(&read_parquet(cut.parquet)),
                concat(&parquet),
                "{what}"
            );
        }
    }
    assert_eq!(
        reassembled, 5,
        "the captures' datagrams were not reassembled"
    );
}

/// A fragment flood through the engine: 30,000 datagrams of which only every tenth completes,
/// 1,000 bytes each (30 MB if all were held), with a 1 MiB cap. The complete ones are
/// reassembled, the others are given up and counted, every fragment is a row and a packet of
/// its flow.
/// A little-endian µs Ethernet pcap built frame by frame, `rate` frames per second from 0.
struct PcapWriter {
    bytes: Vec<u8>,
    frames: u32,
    rate: u32,
}

impl PcapWriter {
    fn new(rate: u32) -> Self {
        let bytes = vec![
            0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0,
            0,
        ];
        PcapWriter {
            bytes,
            frames: 0,
            rate,
        }
    }

    fn record(&mut self, f: &[u8]) {
        let (s, us) = (
            self.frames / self.rate,
            (self.frames % self.rate) * (1_000_000 / self.rate),
        );
        for v in [s, us, f.len() as u32, f.len() as u32] {
            self.bytes.extend_from_slice(&v.to_le_bytes());
        }
        self.bytes.extend_from_slice(f);
        self.frames += 1;
    }
}

#[test]
fn a_fragment_flood_is_bounded_and_counted() {
    const DATAGRAMS: u32 = 30_000;
    let fragment = |id: u16, offset: u16, more: bool| -> Vec<u8> {
        let data = [0x5a_u8; 1000];
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00, 0x45, 0];
        f.extend_from_slice(&(20 + data.len() as u16).to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(&((u16::from(more) << 13) | (offset / 8)).to_be_bytes());
        f.extend_from_slice(&[64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&data);
        f
    };
    let mut pcap = PcapWriter::new(1000);
    for i in 0..DATAGRAMS {
        // Identifications repeat every 65,536 datagrams; these stay below that.
        let id = i as u16;
        pcap.record(&fragment(id, 0, true));
        if i % 10 == 9 {
            pcap.record(&fragment(id, 1000, false));
        }
    }
    let engine = Engine::builder()
        .jobs(2)
        .chunk_frames(1000)
        .fragments(pcaplab_core::FragConfig {
            timeout_ns: 60_000_000_000,
            max_bytes: 1 << 20,
        })
        .build()
        .expect("engine");
    let frames = pcap.frames;
    let out = convert(&engine, "flood", pcap.bytes);
    let s = out.report.expect("report").summary;
    assert_eq!(s.packets, u64::from(frames));
    let f = s.fragments;
    assert_eq!(f.reassembled, u64::from(DATAGRAMS / 10), "{f:?}");
    // About 1,000 incomplete datagrams fit in 1 MiB: almost all the others were evicted.
    assert!(f.evicted > u64::from(DATAGRAMS) * 8 / 10, "{f:?}");
    assert_eq!(
        f.evicted + f.timed_out + f.incomplete,
        u64::from(DATAGRAMS - DATAGRAMS / 10),
        "{f:?}"
    );
    assert!(f.incomplete > 0, "{f:?}");
    assert_eq!(rows(&read_parquet(out.parquet)), frames as usize);
    // One UDP flow (no ports: the datagrams never complete or carry no UDP header in their
    // first fragment): every fragment counted in it.
    let flows = read_parquet(out.flows);
    let packets: u64 = flows
        .iter()
        .map(|b| {
            b.column_by_name("packets")
                .expect("packets")
                .as_primitive::<UInt64Type>()
                .values()
                .iter()
                .sum::<u64>()
        })
        .sum();
    assert_eq!(packets, u64::from(frames));
}

/// Packet `i` of a spoofed SYN flood: from 10.0.0.0 + `i`, port 1024 + `i` mod 60,000, to
/// 192.0.2.1 port 80.
fn spoofed_syn(i: u32) -> Vec<u8> {
    let (src, sport) = spoofed_source(i);
    tcp_to_server(src, sport, 80, 0x02)
}

fn spoofed_source(i: u32) -> ([u8; 4], u16) {
    ((0x0a00_0000 + i).to_be_bytes(), 1024 + (i % 60_000) as u16)
}

/// An Ethernet frame of a 40-byte TCP segment from `src` to 192.0.2.1 with these flags.
fn tcp_to_server(src: [u8; 4], sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
    f.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[192, 0, 2, 1]);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xfa, 0xf0, 0, 0, 0, 0]);
    f
}

/// A capture whose time runs backwards (`mergecap -a` of two copies: the second starts 400 s
/// before the first ends) has the flows a tracker reading it packet by packet finds, whatever
/// the chunking: a flow is idle once network time (the latest timestamp so far) has moved past
/// its last packet by its timeout. Twenty short TCP flows of the first 40 s are long idle when
/// the copy begins again and start anew; three that last the whole copy go on.
#[test]
fn flows_of_a_capture_whose_time_runs_backwards_do_not_depend_on_chunking() {
    let mut copy = PcapWriter::new(1);
    for k in 0..400_u16 {
        let sport = if k < 40 { 5000 + k % 20 } else { 6000 + k % 3 };
        copy.record(&tcp_to_server([198, 51, 100, 9], sport, 443, 0x10));
    }
    let mut pcap = copy.bytes.clone();
    pcap.extend_from_slice(&copy.bytes[24..]);
    let whole = convert(&engine(1, 1 << 20), "backwards", pcap.clone());
    let flows = sorted_lines(&whole.flows_csv);
    assert_eq!(flows.len(), 1 + 43, "{flows:#?}");
    let stats = whole.report.expect("report").summary.flows.expect("flows");
    assert_eq!(stats.flows, 43);
    for (jobs, chunk) in [(1, 1), (2, 7), (2, 64), (1, 399), (2, 400), (1, 401)] {
        let cut = convert(&engine(jobs, chunk), "backwards", pcap.clone());
        let what = format!("{jobs} jobs, chunks of {chunk}");
        assert_eq!(sorted_lines(&cut.flows_csv), flows, "{what}");
        let s = cut.report.expect(&what).summary.flows.expect(&what);
        assert_eq!(s, stats, "{what}");
    }
}

/// The encodings of each column's data pages (not of its dictionary page) in the one row group
/// of the Parquet file `bytes`.
fn data_page_encodings(bytes: &[u8]) -> Vec<(String, Vec<parquet::basic::Encoding>)> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = SerializedFileReader::new(bytes::Bytes::from(bytes.to_vec())).expect("parquet");
    let meta = file.metadata();
    assert_eq!(meta.num_row_groups(), 1);
    meta.row_group(0)
        .columns()
        .iter()
        .map(|column| {
            let encodings = column
                .page_encoding_stats_mask()
                .expect("page encoding stats")
                .encodings()
                .collect();
            (column.column_path().string(), encodings)
        })
        .collect()
}

/// The packet table's address and port columns: dictionary-encoded where their values repeat
/// (ordinary traffic: a few hosts and connections), plain once a row group's dictionary of them
/// passes its limit (a spoofed flood: every source address and port new) — and either way they
/// read back as written.
#[test]
fn address_and_port_dictionaries_give_way_to_plain_on_a_flood() {
    use parquet::basic::Encoding;
    const PACKETS: u32 = 40_000;
    let source = |flood: bool, i: u32| -> ([u8; 4], u16) {
        if flood {
            spoofed_source(i)
        } else {
            ([198, 51, 100, (i % 8) as u8], 40_000 + (i % 200) as u16)
        }
    };
    for flood in [false, true] {
        let mut pcap = PcapWriter::new(50_000);
        for i in 0..PACKETS {
            let (src, sport) = source(flood, i);
            pcap.record(&tcp_to_server(src, sport, 80, 0x02));
        }
        let engine = Engine::builder().jobs(1).build().expect("engine");
        let out = convert(&engine, "shape", pcap.bytes);
        out.report.expect("report");
        let mut checked = 0;
        for (name, data_pages) in data_page_encodings(&out.parquet) {
            if !matches!(name.as_str(), "src_ip" | "dst_ip" | "src_port" | "dst_port") {
                continue;
            }
            checked += 1;
            let plain = data_pages.contains(&Encoding::PLAIN);
            let expect_plain = flood && matches!(name.as_str(), "src_ip" | "src_port");
            assert_eq!(plain, expect_plain, "flood {flood}, {name}: {data_pages:?}");
        }
        assert_eq!(checked, 4);
        let batches = read_parquet(out.parquet);
        let (mut row, mut ips, mut ports) = (0, 0, 0);
        for b in &batches {
            let ip = b
                .column_by_name("src_ip")
                .expect("src_ip")
                .as_string::<i32>();
            let port = b
                .column_by_name("src_port")
                .expect("src_port")
                .as_primitive::<arrow_array::types::UInt16Type>();
            for r in 0..b.num_rows() {
                let (src, sport) = source(flood, row);
                ips += usize::from(ip.value(r) == std::net::Ipv4Addr::from(src).to_string());
                ports += usize::from(port.value(r) == sport);
                row += 1;
            }
        }
        assert_eq!(
            (row, ips, ports),
            (PACKETS, PACKETS as usize, PACKETS as usize)
        );
    }
}

/// The flow table's frame, timestamp and offset columns are delta-encoded (flows are written
/// in file order, so each value is close to the one before), and read back as the flows were.
#[test]
fn flow_positions_and_times_are_delta_encoded() {
    use parquet::basic::Encoding;
    const FLOWS: u32 = 3_000;
    let mut pcap = PcapWriter::new(50_000);
    for i in 0..FLOWS {
        pcap.record(&spoofed_syn(i));
    }
    let frames = pcap.frames;
    let engine = Engine::builder().jobs(2).build().expect("engine");
    let out = convert(&engine, "positions", pcap.bytes);
    out.report.expect("report");
    let delta = [
        "first_ts",
        "last_ts",
        "first_frame",
        "last_frame",
        "first_offset",
        "last_offset",
    ];
    let encodings = data_page_encodings(&out.flows);
    for name in delta {
        let (_, data_pages) = encodings
            .iter()
            .find(|(n, _)| n == name)
            .expect("a delta column");
        assert_eq!(data_pages, &[Encoding::DELTA_BINARY_PACKED], "{name}");
    }
    // Each flow is one SYN: its frame, offset and time are its packet's (24-byte file header,
    // 16-byte record headers, 54-byte frames, one every 20 µs).
    let (mut row, mut start) = (0u64, None);
    for b in read_parquet(out.flows) {
        let column = |name: &str| b.column_by_name(name).expect("column").clone();
        let u64s = |name: &str| {
            column(name)
                .as_primitive::<arrow_array::types::UInt64Type>()
                .values()
                .to_vec()
        };
        let ts = column("first_ts");
        let ts = ts.as_primitive::<arrow_array::types::TimestampNanosecondType>();
        let (first_frame, last_frame) = (u64s("first_frame"), u64s("last_frame"));
        let (first_offset, last_offset) = (u64s("first_offset"), u64s("last_offset"));
        for r in 0..b.num_rows() {
            row += 1;
            assert_eq!((first_frame[r], last_frame[r]), (row, row));
            let offset = 24 + (row - 1) * (16 + 54);
            assert_eq!((first_offset[r], last_offset[r]), (offset, offset));
            let start = *start.get_or_insert(ts.value(r));
            assert_eq!(ts.value(r), start + (row as i64 - 1) * 20_000);
        }
    }
    assert_eq!(row, u64::from(FLOWS));
    assert_eq!(frames, FLOWS);
}

/// A spoofed SYN flood (every packet a new flow) with one real conversation through it, under
/// a flow memory budget far below the flood's flows: every flow is written exactly once, every
/// packet is in exactly one flow, the evictions are counted, and the conversation is one flow.
#[test]
fn a_syn_flood_under_a_flow_budget_loses_and_duplicates_nothing() {
    const SYNS: u32 = 40_000;
    let mut pcap = PcapWriter::new(50_000);
    for i in 0..SYNS {
        pcap.record(&spoofed_syn(i));
        if i % 400 == 0 {
            pcap.record(&tcp_to_server([198, 51, 100, 9], 40_000, 443, 0x10));
        }
    }
    let frames = pcap.frames;
    let flow_memory = 1 << 20;
    let budget = pcaplab_core::flows::Budget::of(flow_memory).max_flows();
    assert!(budget < SYNS as usize / 10, "{budget}");
    // In the order written, per chunk size: threads must not change it.
    let mut written: std::collections::HashMap<usize, Vec<String>> = Default::default();
    for (jobs, chunk) in [(1, 16 * 1024), (1, 1000), (2, 1000), (2, 333)] {
        let engine = Engine::builder()
            .jobs(jobs)
            .chunk_frames(chunk)
            .flows(pcaplab_core::FlowConfig {
                max_bytes: flow_memory,
                ..pcaplab_core::FlowConfig::default()
            })
            .build()
            .expect("engine");
        let out = convert(&engine, "flood", pcap.bytes.clone());
        let s = out.report.expect("report").summary;
        assert_eq!(s.packets, u64::from(frames));
        let stats = s.flows.expect("flows");
        // Tracked for the summary item alone, without flow rows, the flows (which are then
        // counted and dropped as they retire) have the same totals and top flows.
        let counted = engine
            .convert(
                "flood",
                Box::new(Cursor::new(pcap.bytes.clone())),
                Outputs {
                    track_flows: true,
                    ..Outputs::default()
                },
            )
            .expect("report")
            .summary
            .flows;
        assert_eq!(counted.as_ref(), Some(&stats), "{jobs} {chunk}");
        let flows = read_parquet(out.flows);
        let strings = |name: &str| -> Vec<String> {
            flows
                .iter()
                .flat_map(|b| {
                    let c = b.column_by_name(name).expect("column").as_string::<i32>();
                    (0..c.len())
                        .map(|i| c.value(i).to_owned())
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let packets: Vec<u64> = flows
            .iter()
            .flat_map(|b| {
                let c = b.column_by_name("packets").expect("packets");
                c.as_primitive::<UInt64Type>().values().to_vec()
            })
            .collect();
        let dports: Vec<Option<u16>> = flows
            .iter()
            .flat_map(|b| {
                let c = b.column_by_name("dst_port").expect("dst_port");
                c.as_primitive::<arrow_array::types::UInt16Type>()
                    .iter()
                    .collect::<Vec<_>>()
            })
            .collect();
        // Every packet in exactly one flow, every flow once.
        assert_eq!(
            packets.iter().sum::<u64>(),
            u64::from(frames),
            "{jobs} {chunk}"
        );
        assert_eq!(packets.len() as u64, stats.flows);
        assert_eq!(stats.flows, u64::from(SYNS) + 1, "{jobs} {chunk}");
        let mut ids = strings("community_id");
        match written.get(&chunk) {
            Some(before) => assert!(*before == ids, "order changed with {jobs} jobs"),
            None => {
                written.insert(chunk, ids.clone());
            }
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len() as u64, stats.flows, "no flow written twice");
        let ends = strings("end_reason");
        let evicted = ends.iter().filter(|e| *e == "evicted").count() as u64;
        assert_eq!(evicted, stats.evicted);
        assert!(evicted >= u64::from(SYNS) - budget as u64, "{evicted}");
        assert!(ends.iter().all(|e| e == "evicted" || e == "end_of_capture"));
        // The conversation outlived the flood as one flow.
        let talk: Vec<usize> = (0..dports.len())
            .filter(|&i| dports[i] == Some(443))
            .collect();
        assert_eq!(talk.len(), 1);
        assert_eq!(packets[talk[0]], u64::from(SYNS / 400));
        assert_eq!(ends[talk[0]], "end_of_capture");
    }
}

/// Nested tunnels: a DNS query inside VXLAN inside VXLAN inside VXLAN (VNIs 1, 2, 3) is four
/// flows — the three tunnels' own and the query — each linked to the one that carried it.
#[test]
fn nested_tunnels_are_flows_linked_to_their_carriers() {
    let Some(dir) = corpus() else { return };
    let file = "zeek__vxlan-triple-v2.pcap";
    let bytes = std::fs::read(dir.join(file)).expect("read");
    let out = convert(&engine(1, 1 << 20), file, bytes);
    out.report.expect("report");
    let flows = read_parquet(out.flows);
    let b = arrow_select::concat::concat_batches(&flows[0].schema(), &flows).expect("concat");
    let text = |name: &str, row: usize| -> Option<String> {
        let c = b.column_by_name(name).expect(name).as_string::<i32>();
        c.is_valid(row).then(|| c.value(row).to_owned())
    };
    let id = |row: usize| {
        let c = b
            .column_by_name("tunnel_id")
            .expect("tunnel_id")
            .as_primitive::<arrow_array::types::UInt32Type>();
        c.is_valid(row).then(|| c.value(row))
    };
    let depth = |row: usize| {
        let c = b
            .column_by_name("tunnels")
            .expect("tunnels")
            .as_list::<i32>();
        if c.is_valid(row) {
            c.value(row).len()
        } else {
            0
        }
    };
    // As written: the four flows begin on the same frame, and flows of one frame are written
    // outermost first. (source address, tunnel_type, tunnels, tunnel_id).
    let got: Vec<_> = (0..b.num_rows())
        .map(|r| (text("src_ip", r), text("tunnel_type", r), depth(r), id(r)))
        .collect();
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        got,
        [
            (s("1.1.1.1"), s("vxlan"), 0, None),
            (s("2.2.2.2"), s("vxlan"), 1, Some(1)),
            (s("3.3.3.3"), s("vxlan"), 2, Some(2)),
            (s("4.4.4.4"), None, 3, Some(3)),
        ]
    );
    // Each flow's parent is the flow of the tunnel that carried it.
    assert_eq!(text("tunnel_parent", 0), None);
    for r in 1..b.num_rows() {
        assert_eq!(
            text("tunnel_parent", r),
            text("community_id", r - 1),
            "rows {} and {r}",
            r - 1
        );
    }
}

#[test]
fn parquet_schema_and_values_read_back() {
    let Some(dir) = corpus() else { return };
    let bytes = std::fs::read(dir.join("zeek__vlan-qinqinq.pcap")).expect("read");
    let c = convert(&engine(2, 4), "qinq", bytes);
    let batches = read_parquet(c.parquet);
    let all = arrow_select::concat::concat_batches(&batches[0].schema(), &batches).expect("concat");
    assert_eq!(all.schema().fields(), pcaplab_core::schema().fields());
    let vlans = all
        .column_by_name("vlan_ids")
        .expect("vlan_ids")
        .as_list::<i32>();
    let first = vlans.value(0);
    let ids: Vec<u16> = first
        .as_primitive::<arrow_array::types::UInt16Type>()
        .values()
        .to_vec();
    assert_eq!(ids.len(), 3, "QinQinQ has three tags: {ids:?}");
}

#[test]
fn an_empty_capture_gives_valid_empty_outputs() {
    let Some(dir) = corpus() else { return };
    let c = convert(
        &engine(1, 8),
        "empty",
        std::fs::read(dir.join("tcpdump__empty.pcapng")).expect("read"),
    );
    assert_eq!(c.report.expect("ok").summary.packets, 0);
    assert!(read_parquet(c.parquet).iter().all(|b| b.num_rows() == 0));
    assert_eq!(c.csv, pcaplab_core::encode::csv_header());
    assert_eq!(c.lab_csv, b"src,dst,len,proto\n");
}

#[test]
fn lab_csv_rows_follow_the_lab() {
    let Some(dir) = corpus() else { return };
    let bytes = std::fs::read(dir.join("chrissanders__http_google.pcapng")).expect("read");
    let c = convert(&engine(1, 8), "g", bytes);
    let text = String::from_utf8(c.lab_csv).expect("utf8");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("src,dst,len,proto"));
    // Every packet of this capture is Ethernet + IPv4: an ip row, then an ether row.
    let body: Vec<&str> = lines.collect();
    assert_eq!(body.len(), 2 * 12);
    for pair in body.chunks(2) {
        let ip: Vec<&str> = pair[0].split(',').collect();
        let eth: Vec<&str> = pair[1].split(',').collect();
        assert_eq!((ip.len(), ip[3]), (4, "ip"));
        assert!(ip[2].parse::<u16>().is_ok());
        assert_eq!((eth.len(), eth[2], eth[3]), (4, "-1", "ether"));
        assert_eq!(eth[0].len(), 17);
    }
}

#[test]
fn writer_failure_is_an_error_naming_the_format() {
    struct Full;
    impl std::io::Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let Some(dir) = corpus() else { return };
    let bytes = std::fs::read(dir.join("pcapplusplus__many-protocols.pcap")).expect("read");
    let e = engine(2, 50);
    let r = e.convert(
        "m",
        Box::new(Cursor::new(bytes)),
        Outputs {
            csv: Some(Box::new(Full)),
            ..Outputs::default()
        },
    );
    match r {
        Err(ConvertError::Write { format, .. }) => assert_eq!(format, "csv"),
        other => panic!("{other:?}"),
    }
    // The engine is still usable afterwards (every slot was given back).
    let ok = convert(
        &e,
        "m2",
        std::fs::read(dir.join("tcpdump__pptp.pcap")).expect("read"),
    );
    assert_eq!(ok.report.expect("ok").summary.packets, 23);
}
