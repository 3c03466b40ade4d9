//! Community ID v1 against the specification's published test vectors
//! (`tests/data/community-id-vectors.tsv`, from corelight/community-id-spec's baseline files):
//! each vector's packet goes through the same key function the flow table uses, so endpoint
//! ordering, the ICMP type pairing and the hash are all checked, for seeds 0 and 1.

use std::net::IpAddr;

use pcaplab_core::dissect::{Addr, Ip, Packet};
use pcaplab_core::flows::{IPPROTO_ICMP, IPPROTO_ICMPV6, key_of};

fn addr(s: &str) -> Addr {
    match s.parse::<IpAddr>().expect("address") {
        IpAddr::V4(a) => Addr::V4(a.octets()),
        IpAddr::V6(a) => Addr::V6(a.octets()),
    }
}

#[test]
fn published_vectors() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/community-id-vectors.tsv"
    );
    let text = std::fs::read_to_string(path).expect("vectors");
    let mut checked = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split('\t').collect();
        let [seed, proto, saddr, daddr, sport, dport, expected] = f[..] else {
            panic!("bad vector line: {line}")
        };
        let seed: u16 = seed.parse().expect("seed");
        let proto: u8 = proto.parse().expect("proto");
        let port = |p: &str| (p != "-").then(|| p.parse::<u16>().expect("port"));
        let (src, dst) = (addr(saddr), addr(daddr));
        let mut p = Packet {
            ip: Some(Ip {
                version: if matches!(src, Addr::V4(_)) { 4 } else { 6 },
                src,
                dst,
                proto,
                len: 0,
                ttl: 64,
                frag_offset: 0,
                more_fragments: false,
            }),
            ..Packet::default()
        };
        if proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6 {
            p.icmp_type = port(sport).map(|t| t as u8);
            p.icmp_code = port(dport).map(|c| c as u8);
        } else {
            p.src_port = port(sport);
            p.dst_port = port(dport);
        }
        let (key, _) = key_of(&p).expect("an IP packet has a key");
        assert_eq!(key.community_id(seed), expected, "{line}");
        checked += 1;
    }
    assert_eq!(checked, 46);
}
