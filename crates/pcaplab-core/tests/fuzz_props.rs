//! No byte sequence makes pcaplab panic: not as a whole file, not after a valid file header,
//! not as a packet of any link type, not inside any tunnel, not as IP fragments, not as the
//! frames of QUIC Initial packets.

mod common;

use pcaplab_core::dissect::{MAX_TUNNELS, Packet, dissect, linktype};
use pcaplab_core::fuzzing::LINK_TYPES;
use proptest::prelude::*;

use common::decode_bytes;

/// Valid file headers to put in front of random bytes, so that the fuzzing reaches records.
fn headers() -> Vec<Vec<u8>> {
    let pcap_le = [
        0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0,
    ];
    let mut pcap_be_ns = vec![0xa1, 0xb2, 0x3c, 0x4d, 0, 2, 0, 4];
    pcap_be_ns.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 1]);
    let mut modified = pcap_le.to_vec();
    modified[..4].copy_from_slice(&[0x34, 0xcd, 0xb2, 0xa1]);
    // pcapng: SHB (28 bytes) + IDB for Ethernet (20 bytes).
    let mut ng = vec![
        0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0,
    ];
    ng.extend_from_slice(&[0xff; 8]);
    ng.extend_from_slice(&[28, 0, 0, 0]);
    ng.extend_from_slice(&[1, 0, 0, 0, 20, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0]);
    let mut snoop = b"snoop\0\0\0".to_vec();
    snoop.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 4]);
    vec![pcap_le.to_vec(), pcap_be_ns, modified, ng, snoop]
}

/// How random bytes are carried: (IP protocol, UDP destination port, a valid tunnel header to
/// put before them). Every tunnel pcaplab decodes, plus plain UDP and TCP.
const CARRIERS: [(u8, u16, &[u8]); 17] = [
    (17, 4789, &[0x08, 0, 0, 0, 0, 0, 1, 0]),
    (17, 8472, &[0x08, 0, 0, 0, 0, 0, 2, 0]),
    (17, 6081, &[0, 0, 0x65, 0x58, 0, 0, 1, 0]),
    (17, 4754, &[0, 0, 0x08, 0x00]),
    (17, 2152, &[0x30, 0xff, 0, 0, 0, 0, 0, 1]),
    (17, 3544, &[]),
    (17, 5072, &[0x41, 0x52, 4, 0]),
    (17, 53, &[]),
    (47, 0, &[0, 0, 0x65, 0x58]),
    (47, 0, &[0x10, 0, 0x88, 0xbe, 0, 0, 0, 1]),
    (47, 0, &[0x10, 0, 0x22, 0xeb, 0, 0, 0, 1]),
    (47, 0, &[0x30, 0x81, 0x88, 0x0b, 0, 0, 0, 0]),
    (47, 0, &[0x20, 0, 0x86, 0xdd, 0, 0, 0, 7]),
    (4, 0, &[]),
    (41, 0, &[]),
    (6, 0, &[]),
    (47, 0, &[]),
];

/// An Ethernet/IPv4 frame carrying `body` as `CARRIERS[carrier]` does, its IPv4 header's
/// identification and flags/fragment offset word set to `id` and `frag` (so the frame may be
/// a fragment of a tunnel packet).
fn carried(carrier: usize, id: u16, frag: u16, body: &[u8]) -> Vec<u8> {
    let (proto, port, header) = CARRIERS[carrier];
    let mut l4 = Vec::new();
    if proto == 17 {
        let len = (8 + header.len() + body.len()) as u16;
        l4.extend_from_slice(&40000u16.to_be_bytes());
        l4.extend_from_slice(&port.to_be_bytes());
        l4.extend_from_slice(&len.to_be_bytes());
        l4.extend_from_slice(&[0, 0]);
    }
    l4.extend_from_slice(header);
    l4.extend_from_slice(body);
    let mut frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
    frame.extend_from_slice(&[0x45, 0]);
    frame.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    frame.extend_from_slice(&id.to_be_bytes());
    frame.extend_from_slice(&frag.to_be_bytes());
    frame.extend_from_slice(&[64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    frame.extend_from_slice(&l4);
    frame
}

/// A classic pcap file (Ethernet, µs) of `frames`, one per millisecond.
fn pcap_of(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = headers()[0].clone();
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&((i as u32) * 1000).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_as_a_file(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode_bytes("fuzz", bytes, 3);
    }

    #[test]
    fn any_records_after_a_valid_header(
        which in 0usize..5,
        body in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        let mut bytes = headers()[which].clone();
        bytes.extend_from_slice(&body);
        let decoded = decode_bytes("fuzz", bytes, 5);
        prop_assert!(decoded.open_error.is_none(), "{:?}", decoded.open_error);
    }

    #[test]
    fn any_bytes_as_a_packet(
        // Every decoded link type (the fuzz targets' list) and one that is not.
        lt in proptest::sample::select([&LINK_TYPES[..], &[4242]].concat()),
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut p = Packet::default();
        dissect(lt, &bytes, &mut p);
        prop_assert!(usize::from(p.vlan_count) <= pcaplab_core::dissect::MAX_VLANS);
    }

    /// Random bytes behind real headers reach the deeper parsers more often.
    #[test]
    fn any_bytes_behind_ethernet_ip_headers(
        ethertype in proptest::sample::select(vec![0x0800u16, 0x86dd, 0x8100, 0x88a8, 0x8847, 0x8864]),
        bytes in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame.extend_from_slice(&bytes);
        let mut p = Packet::default();
        dissect(linktype::ETHERNET, &frame, &mut p);
        prop_assert_eq!(p.ethertype.is_some(), true);
    }

    /// Random bytes behind every tunnel header: no panic, the nesting stays bounded, and a
    /// decoded tunnel always keeps the outer addresses.
    #[test]
    fn any_bytes_inside_each_tunnel(
        carrier in 0..CARRIERS.len(),
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let frame = carried(carrier, 1, 0x4000, &body);
        let mut p = Packet::default();
        dissect(linktype::ETHERNET, &frame, &mut p);
        prop_assert!(p.env.layers().len() <= MAX_TUNNELS);
        prop_assert_eq!(p.env.is_empty(), p.env.outer.is_none());
    }

    /// QUIC client Initials around random frames (CRYPTO frames with random offsets and
    /// bytes, ACKs, anything), sealed with their connection's keys, and raw datagrams, over
    /// chunks of any size (`pcaplab_core::fuzzing::quic`): no panic, the CRYPTO streams stay
    /// within their cap.
    #[test]
    fn any_frames_in_quic_initials(
        config in any::<u8>(),
        datagrams in proptest::collection::vec(
            (any::<u8>(), proptest::collection::vec(
                (0u8..4, 0u16..0x3000, proptest::collection::vec(any::<u8>(), 0..300)), 1..4)),
            0..12,
        ),
    ) {
        let mut input = vec![config];
        for (h, frames) in &datagrams {
            let mut body = Vec::new();
            for (kind, offset, bytes) in frames {
                match kind {
                    // CRYPTO at a 2-byte offset, a ClientHello's type byte first at offset 0.
                    0 | 1 => {
                        body.push(6);
                        body.extend_from_slice(&(0x4000 | offset).to_be_bytes());
                        body.extend_from_slice(&(0x4000 | bytes.len() as u16).to_be_bytes());
                        if *offset == 0 && !bytes.is_empty() {
                            body.push(1);
                            body.extend_from_slice(&bytes[1..]);
                        } else {
                            body.extend_from_slice(bytes);
                        }
                    }
                    // ACK with random fields (possibly cut), then padding.
                    2 => {
                        body.push(2);
                        body.extend_from_slice(bytes);
                    }
                    _ => body.extend_from_slice(bytes),
                }
            }
            input.push(*h);
            input.extend_from_slice(&(body.len() as u16).to_be_bytes());
            input.extend_from_slice(&body);
        }
        pcaplab_core::fuzzing::quic(&input);
    }

    /// Tunnel packets whose outer IPv4 headers are random fragments, through the whole
    /// pipeline (the file-order reassembly, chunks of 3 frames): no panic, one row per frame.
    #[test]
    fn any_fragments_of_tunnel_packets(
        frames in proptest::collection::vec(
            (0..CARRIERS.len(), 0u16..4, prop_oneof![Just(0x2000u16), Just(0), 0u16..0x4000],
             proptest::collection::vec(any::<u8>(), 0..96)),
            0..40,
        ),
    ) {
        let frames: Vec<Vec<u8>> = frames
            .iter()
            .map(|(c, id, frag, body)| carried(*c, *id, *frag, body))
            .collect();
        let decoded = decode_bytes("fuzz", pcap_of(&frames), 3);
        prop_assert!(decoded.open_error.is_none() && decoded.damage.is_none());
        let rows: usize = decoded.batches.iter().map(|b| b.num_rows()).sum();
        prop_assert_eq!(rows, frames.len());
    }
}

/// Every corpus capture (both manifests) through the capture fuzz target: besides not
/// panicking, every row's record read back at its offset is a whole record of its length.
#[test]
fn every_corpus_capture_places_its_records() {
    let Some(dir) = common::corpus() else { return };
    for name in common::manifest_files(&dir) {
        let bytes = std::fs::read(dir.join(&name)).expect("read");
        let caught = std::panic::catch_unwind(|| pcaplab_core::fuzzing::capture(&bytes));
        assert!(caught.is_ok(), "{name}");
    }
}
