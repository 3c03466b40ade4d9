//! No byte sequence makes pcaplab panic: not as a whole file, not after a valid file header,
//! not as a packet of any link type.

mod common;

use pcaplab_core::dissect::{Packet, dissect, linktype};
use proptest::prelude::*;

use common::decode_bytes;

const LINK_TYPES: [u16; 16] = [
    linktype::NULL,
    linktype::ETHERNET,
    linktype::PPP,
    linktype::RAW_OPENBSD,
    linktype::RAW_BSDOS,
    linktype::PPP_HDLC,
    linktype::PPP_ETHER,
    linktype::RAW,
    linktype::IEEE802_11,
    linktype::LOOP,
    linktype::LINUX_SLL,
    linktype::IEEE802_11_RADIOTAP,
    linktype::IPV4,
    linktype::IPV6,
    linktype::LINUX_SLL2,
    4242,
];

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
        lt in proptest::sample::select(LINK_TYPES.to_vec()),
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
}
