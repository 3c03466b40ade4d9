//! Per-capture statistics, accumulated per chunk in parallel and merged in file order.

use std::collections::BTreeMap;

use crate::dissect::Packet;
use crate::reader::{FrameMeta, NO_TIMESTAMP};

/// Counts and extents of one capture (or one chunk of it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub packets: u64,
    /// Captured bytes (sum of cap_len).
    pub cap_bytes: u64,
    /// Bytes on the wire (sum of wire_len).
    pub wire_bytes: u64,
    /// Earliest and latest timestamp (ns since the epoch); frames without one are not counted.
    pub first_ts: Option<i64>,
    pub last_ts: Option<i64>,
    /// Packets per LINKTYPE value.
    pub link_types: BTreeMap<u16, u64>,
    /// Packets per network protocol: `ipv4`, `ipv6`, `arp`, `other` (by EtherType), `none`.
    pub network: BTreeMap<&'static str, u64>,
    /// Packets per IP protocol number (of the outermost IP header).
    pub ip_protos: BTreeMap<u8, u64>,
    /// Packets whose decoding stopped early (they still have a row).
    pub decode_errors: u64,
}

/// The keys of [`Summary::network`], in [`Counter`]'s array order.
const NETWORK: [&str; 5] = ["ipv4", "ipv6", "arp", "other", "none"];

/// Counts one chunk's packets in flat arrays — no map lookup per packet — and becomes a
/// [`Summary`] once, at the end of the chunk.
pub(crate) struct Counter {
    summary: Summary,
    /// (link type, packets); a chunk rarely has more than one or two.
    link_types: Vec<(u16, u64)>,
    network: [u64; NETWORK.len()],
    ip_protos: [u64; 256],
}

impl Counter {
    pub(crate) fn new() -> Self {
        Counter {
            summary: Summary::default(),
            link_types: Vec::new(),
            network: [0; NETWORK.len()],
            ip_protos: [0; 256],
        }
    }

    pub(crate) fn add(&mut self, f: &FrameMeta, p: &Packet) {
        let s = &mut self.summary;
        s.packets += 1;
        s.cap_bytes += u64::from(f.cap_len);
        s.wire_bytes += u64::from(f.wire_len);
        if f.ts_ns != NO_TIMESTAMP {
            s.first_ts = Some(s.first_ts.map_or(f.ts_ns, |t| t.min(f.ts_ns)));
            s.last_ts = Some(s.last_ts.map_or(f.ts_ns, |t| t.max(f.ts_ns)));
        }
        match self.link_types.iter_mut().find(|(l, _)| *l == f.link_type) {
            Some((_, n)) => *n += 1,
            None => self.link_types.push((f.link_type, 1)),
        }
        let network = match (p.ip, p.ethertype) {
            (Some(ip), _) if ip.version == 4 => 0,
            (Some(_), _) => 1,
            (None, Some(0x0806)) => 2,
            (None, Some(_)) => 3,
            (None, None) => 4,
        };
        self.network[network] += 1;
        if let Some(ip) = p.ip {
            self.ip_protos[usize::from(ip.proto)] += 1;
        }
        if p.error.is_some() {
            s.decode_errors += 1;
        }
    }

    pub(crate) fn finish(self) -> Summary {
        let mut s = self.summary;
        s.link_types.extend(self.link_types);
        s.network.extend(
            NETWORK
                .into_iter()
                .zip(self.network)
                .filter(|(_, n)| *n > 0),
        );
        s.ip_protos
            .extend((0..=u8::MAX).zip(self.ip_protos).filter(|(_, n)| *n > 0));
        s
    }
}

impl Summary {
    /// Fold a later chunk's statistics into these.
    pub fn merge(&mut self, other: &Summary) {
        self.packets += other.packets;
        self.cap_bytes += other.cap_bytes;
        self.wire_bytes += other.wire_bytes;
        self.first_ts = match (self.first_ts, other.first_ts) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_ts = match (self.last_ts, other.last_ts) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        for (k, v) in &other.link_types {
            *self.link_types.entry(*k).or_default() += v;
        }
        for (k, v) in &other.network {
            *self.network.entry(k).or_default() += v;
        }
        for (k, v) in &other.ip_protos {
            *self.ip_protos.entry(*k).or_default() += v;
        }
        self.decode_errors += other.decode_errors;
    }
}

/// A short name for an IP protocol number, for reports.
pub fn ip_proto_name(p: u8) -> Option<&'static str> {
    Some(match p {
        1 => "icmp",
        2 => "igmp",
        4 => "ipip",
        6 => "tcp",
        17 => "udp",
        41 => "ipv6",
        47 => "gre",
        50 => "esp",
        51 => "ah",
        58 => "icmpv6",
        89 => "ospf",
        103 => "pim",
        112 => "vrrp",
        132 => "sctp",
        _ => return None,
    })
}

/// A short name for a LINKTYPE value, for reports.
pub fn link_type_name(l: u16) -> Option<&'static str> {
    use crate::dissect::linktype as lt;
    Some(match l {
        lt::NULL => "null",
        lt::ETHERNET => "ethernet",
        lt::PPP => "ppp",
        lt::RAW_OPENBSD | lt::RAW_BSDOS | lt::RAW => "raw",
        lt::PPP_HDLC => "ppp-hdlc",
        lt::PPP_ETHER => "pppoe",
        lt::IEEE802_11 => "ieee802.11",
        lt::LOOP => "loop",
        lt::LINUX_SLL => "linux-sll",
        lt::IEEE802_11_RADIOTAP => "ieee802.11-radiotap",
        lt::IPV4 => "ipv4",
        lt::IPV6 => "ipv6",
        253 => "netlink",
        lt::LINUX_SLL2 => "linux-sll2",
        _ => return None,
    })
}
