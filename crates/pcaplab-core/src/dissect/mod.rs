//! Link layer → IP → transport, without allocating.
//!
//! The link layers are walked here (Ethernet with VLAN/QinQ, MPLS and PPPoE, Linux SLL/SLL2,
//! BSD null/loop, raw IP, PPP, IEEE 802.11 with or without radiotap); from the IP header on,
//! etherparse's lax slicer does the work, so a packet cut short by the snap length still yields
//! every header it holds. Whatever the bytes, the result is a [`Packet`]: fields that are not
//! there stay `None` and `error` says, in a few words, why decoding stopped early.

use etherparse::err::Layer;
use etherparse::{IpNumber, Ipv6ExtensionSlice, LaxNetSlice, LaxSlicedPacket, TransportSlice, err};

/// LINKTYPE_* values we dissect (<https://www.tcpdump.org/linktypes.html>).
pub mod linktype {
    pub const NULL: u16 = 0;
    pub const ETHERNET: u16 = 1;
    pub const PPP: u16 = 9;
    pub const RAW_OPENBSD: u16 = 12;
    pub const RAW_BSDOS: u16 = 14;
    pub const PPP_HDLC: u16 = 50;
    pub const PPP_ETHER: u16 = 51;
    pub const RAW: u16 = 101;
    pub const IEEE802_11: u16 = 105;
    pub const LOOP: u16 = 108;
    pub const LINUX_SLL: u16 = 113;
    pub const IEEE802_11_RADIOTAP: u16 = 127;
    pub const IPV4: u16 = 228;
    pub const IPV6: u16 = 229;
    pub const LINUX_SLL2: u16 = 276;
}

/// Most VLAN tags we record per packet (tshark's QinQinQ captures use three).
pub const MAX_VLANS: usize = 8;

/// An IP address as raw bytes (formatting to text happens once, in the column builder).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Addr {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addr::V4(a) => std::net::Ipv4Addr::from(*a).fmt(f),
            Addr::V6(a) => std::net::Ipv6Addr::from(*a).fmt(f),
        }
    }
}

/// The outermost IP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ip {
    pub version: u8,
    pub src: Addr,
    pub dst: Addr,
    /// IPv4: the protocol field. IPv6: the transport after the extension headers.
    pub proto: u8,
    /// IPv4: total length. IPv6: 40 + payload length.
    pub len: u32,
    /// TTL or hop limit.
    pub ttl: u8,
    /// Fragment offset in bytes (IPv4 header or IPv6 fragment header).
    pub frag_offset: u16,
    pub more_fragments: bool,
}

/// Everything we decode from one frame; `None` where the packet has no such field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Packet {
    pub src_mac: Option<[u8; 6]>,
    pub dst_mac: Option<[u8; 6]>,
    /// The EtherType of the payload after any VLAN tags.
    pub ethertype: Option<u16>,
    pub vlan_ids: [u16; MAX_VLANS],
    pub vlan_count: u8,
    pub ip: Option<Ip>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    pub tcp_flags: Option<u16>,
    /// TCP sequence number (for following a message over segments; not a column).
    pub tcp_seq: Option<u32>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    /// Bytes after the transport header (or after the IP header when the transport is not
    /// decoded), as the headers declare them — not limited by the snap length.
    pub payload_len: Option<u32>,
    /// Where the TCP or UDP payload is in the frame: (offset, captured length).
    pub payload: Option<(usize, usize)>,
    /// Why decoding stopped early, if it did.
    pub error: Option<&'static str>,
}

impl Packet {
    pub fn vlans(&self) -> &[u16] {
        &self.vlan_ids[..usize::from(self.vlan_count)]
    }
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
const ETHERTYPE_MPLS: u16 = 0x8847;
const ETHERTYPE_MPLS_MC: u16 = 0x8848;
const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn mac(b: &[u8]) -> Option<[u8; 6]> {
    b.get(..6)?.try_into().ok()
}

/// Decode one frame of the given link type into `out` (which is reset first).
pub fn dissect(link_type: u16, data: &[u8], out: &mut Packet) {
    *out = Packet::default();
    dissect_link(link_type, data, out);
    // `ip` recorded the payload's address; make it an offset into this frame.
    if let Some((at, len)) = out.payload {
        out.payload = at
            .checked_sub(data.as_ptr().addr())
            .filter(|off| off.saturating_add(len) <= data.len())
            .map(|off| (off, len));
    }
}

fn dissect_link(link_type: u16, data: &[u8], out: &mut Packet) {
    match link_type {
        linktype::ETHERNET => ethernet(data, out),
        linktype::LINUX_SLL => match be16(data, 14) {
            Some(proto) if data.len() >= 16 => {
                // ARPHRD_NETLINK (824) and the "protocol" values below 0x0600 are not
                // EtherTypes (802.2 LLC, CAN, ...).
                if be16(data, 2) != Some(824) && proto >= 0x0600 {
                    ethertype_chain(proto, &data[16..], out);
                }
            }
            _ => out.error = Some("truncated Linux SLL header"),
        },
        linktype::LINUX_SLL2 => match be16(data, 0) {
            Some(proto) if data.len() >= 20 => {
                if be16(data, 8) != Some(824) && proto >= 0x0600 {
                    ethertype_chain(proto, &data[20..], out);
                }
            }
            _ => out.error = Some("truncated Linux SLL2 header"),
        },
        linktype::NULL | linktype::LOOP => null_loop(link_type, data, out),
        linktype::RAW | linktype::RAW_OPENBSD | linktype::RAW_BSDOS => raw_ip(data, out),
        linktype::IPV4 => ip(data, out),
        linktype::IPV6 => ip(data, out),
        linktype::PPP | linktype::PPP_HDLC => ppp(data, out),
        linktype::PPP_ETHER => {
            // PPPoE header (6 bytes) then PPP.
            match data.get(6..) {
                Some(rest) => ppp(rest, out),
                None => out.error = Some("truncated PPPoE header"),
            }
        }
        linktype::IEEE802_11 => ieee802_11(data, out),
        linktype::IEEE802_11_RADIOTAP => radiotap(data, out),
        _ => {}
    }
}

fn ethernet(data: &[u8], out: &mut Packet) {
    if data.len() < 14 {
        out.error = Some("truncated Ethernet header");
        // tshark still shows the addresses it has.
        out.dst_mac = mac(data);
        out.src_mac = data.get(6..).and_then(mac);
        return;
    }
    out.dst_mac = mac(data);
    out.src_mac = mac(&data[6..]);
    let type_or_len = u16::from_be_bytes([data[12], data[13]]);
    if type_or_len >= 0x0600 {
        ethertype_chain(type_or_len, &data[14..], out);
    } else {
        // IEEE 802.3 length field: an 802.2 LLC header follows.
        llc(&data[14..], out);
    }
}

/// 802.2 LLC; with SNAP and an EtherType OUI the payload is an EtherType payload.
fn llc(data: &[u8], out: &mut Packet) {
    if let [0xaa, 0xaa, 0x03, 0, 0, 0, t0, t1, ..] = data {
        ethertype_chain(u16::from_be_bytes([*t0, *t1]), &data[8..], out);
    }
}

/// Follow EtherTypes through VLAN tags, MPLS labels and PPPoE down to IP.
fn ethertype_chain(mut ethertype: u16, mut data: &[u8], out: &mut Packet) {
    while let ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD = ethertype {
        let (Some(tci), Some(next)) = (be16(data, 0), be16(data, 2)) else {
            out.ethertype = Some(ethertype);
            out.error = Some("truncated VLAN tag");
            return;
        };
        if usize::from(out.vlan_count) < MAX_VLANS {
            out.vlan_ids[usize::from(out.vlan_count)] = tci & 0x0fff;
            out.vlan_count += 1;
        }
        ethertype = next;
        data = &data[4..];
    }
    out.ethertype = Some(ethertype);
    match ethertype {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => ip(data, out),
        ETHERTYPE_MPLS | ETHERTYPE_MPLS_MC => mpls(data, out),
        ETHERTYPE_PPPOE_SESSION => match data.get(6..) {
            Some(rest) => ppp_protocol(rest, out),
            None => out.error = Some("truncated PPPoE header"),
        },
        _ => {}
    }
}

/// MPLS label stack; after the bottom label, IPv4 or IPv6 by the version nibble, as tshark
/// guesses when no pseudowire is configured.
fn mpls(mut data: &[u8], out: &mut Packet) {
    loop {
        let Some(entry) = data.get(..4) else {
            out.error = Some("truncated MPLS label stack");
            return;
        };
        let bottom = entry[2] & 0x01 != 0;
        data = &data[4..];
        if bottom {
            break;
        }
    }
    match data.first().map(|b| b >> 4) {
        Some(4) | Some(6) => ip(data, out),
        _ => {}
    }
}

fn raw_ip(data: &[u8], out: &mut Packet) {
    match data.first().map(|b| b >> 4) {
        Some(4) | Some(6) => ip(data, out),
        Some(_) => out.error = Some("raw packet is neither IPv4 nor IPv6"),
        None => out.error = Some("empty packet"),
    }
}

/// BSD loopback: a 4-byte address family, host byte order for NULL, network order for LOOP.
fn null_loop(link_type: u16, data: &[u8], out: &mut Packet) {
    let Some(fam) = data.get(..4) else {
        out.error = Some("truncated loopback header");
        return;
    };
    let fam = if link_type == linktype::LOOP {
        u32::from_be_bytes([fam[0], fam[1], fam[2], fam[3]])
    } else {
        // The capturing host's byte order: the family is small, so whichever half is zero
        // tells which end holds it.
        let le = u32::from_le_bytes([fam[0], fam[1], fam[2], fam[3]]);
        if le & 0xffff == 0 { le >> 16 } else { le }
    };
    let data = &data[4..];
    match fam {
        // AF_INET everywhere; AF_INET6 on BSDs (24, 28, 30), Linux (10) and Windows (23).
        2 | 10 | 23 | 24 | 28 | 30 => raw_ip(data, out),
        _ => {}
    }
}

/// PPP in HDLC-like framing (optional FF 03) with a 1- or 2-byte protocol field.
fn ppp(data: &[u8], out: &mut Packet) {
    let data = match data {
        [0xff, 0x03, rest @ ..] => rest,
        _ => data,
    };
    ppp_protocol(data, out);
}

fn ppp_protocol(data: &[u8], out: &mut Packet) {
    // A protocol field with an odd first byte is compressed to one byte.
    let (proto, rest) = match data {
        [p, rest @ ..] if p & 1 == 1 => (u16::from(*p), rest),
        [p0, p1, rest @ ..] => (u16::from_be_bytes([*p0, *p1]), rest),
        _ => {
            out.error = Some("truncated PPP header");
            return;
        }
    };
    match proto {
        0x0021 | 0x0057 => ip(rest, out),
        _ => {}
    }
}

/// Radiotap header (its length is in bytes 2..4, little-endian), then 802.11.
fn radiotap(data: &[u8], out: &mut Packet) {
    let Some(len) = data
        .get(2..4)
        .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
    else {
        out.error = Some("truncated radiotap header");
        return;
    };
    match data.get(len..) {
        Some(rest) if len >= 8 => ieee802_11(rest, out),
        _ => out.error = Some("truncated radiotap header"),
    }
}

/// IEEE 802.11 data frames: the header, then LLC/SNAP, then an EtherType payload.
fn ieee802_11(data: &[u8], out: &mut Packet) {
    let Some(&[fc0, fc1]) = data.get(..2).and_then(|b| <&[u8; 2]>::try_from(b).ok()) else {
        out.error = Some("truncated 802.11 header");
        return;
    };
    let frame_type = (fc0 >> 2) & 0x3;
    let subtype = fc0 >> 4;
    let (to_ds, from_ds) = (fc1 & 0x01 != 0, fc1 & 0x02 != 0);
    let protected = fc1 & 0x40 != 0;
    // Only data frames (type 2) without protection carry an LLC payload we can read; subtypes
    // with bit 2 set are "no data" frames.
    if frame_type != 2 || subtype & 0x4 != 0 || protected {
        return;
    }
    let mut header_len = 24;
    if to_ds && from_ds {
        header_len += 6; // address 4
    }
    if subtype & 0x8 != 0 {
        header_len += 2; // QoS control
        if fc1 & 0x80 != 0 {
            header_len += 4; // HT control (the "order" bit on QoS frames)
        }
    }
    match data.get(header_len..) {
        Some(payload) => llc(payload, out),
        None => out.error = Some("truncated 802.11 header"),
    }
}

/// From the IP header on, with etherparse's lax slicer.
fn ip(data: &[u8], out: &mut Packet) {
    let sliced = match LaxSlicedPacket::from_ip(data) {
        Ok(s) => s,
        Err(err::ip::LaxHeaderSliceError::Len(_)) => {
            out.error = Some("truncated IP header");
            return;
        }
        Err(err::ip::LaxHeaderSliceError::Content(e)) => {
            out.error = Some(match e {
                err::ip::HeaderError::UnsupportedIpVersion { .. } => "unknown IP version",
                err::ip::HeaderError::Ipv4HeaderLengthSmallerThanHeader { .. } => {
                    "IPv4 header length below 20 bytes"
                }
            });
            return;
        }
    };
    let mut declared_payload: Option<u32> = None;
    match &sliced.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            let header_len = u32::from(h.ihl()) * 4;
            let total = u32::from(h.total_len());
            out.ip = Some(Ip {
                version: 4,
                src: Addr::V4(h.source()),
                dst: Addr::V4(h.destination()),
                proto: h.protocol().0,
                len: total,
                ttl: h.ttl(),
                frag_offset: h.fragments_offset().value() * 8,
                more_fragments: h.more_fragments(),
            });
            // Transport payload: declared by the total length (TSO captures carry 0 there;
            // then the captured bytes are all we know).
            declared_payload = Some(if total >= header_len {
                total - header_len
            } else {
                v4.payload().payload.len() as u32
            });
            // An authentication header (IPv4's only extension) precedes the transport.
            if let Some(ah_len) = v4.extensions().auth.map(|a| a.slice().len() as u32) {
                declared_payload = declared_payload.map(|p| p.saturating_sub(ah_len));
            }
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            let plen = u32::from(h.payload_length());
            let mut frag_offset = 0;
            let mut more_fragments = false;
            let mut ext_len = 0u32;
            for ext in v6.extensions().clone().into_iter() {
                match &ext {
                    Ipv6ExtensionSlice::Fragment(f) => {
                        frag_offset = f.fragment_offset().value() * 8;
                        more_fragments = f.more_fragments();
                        ext_len += f.slice().len() as u32;
                    }
                    Ipv6ExtensionSlice::HopByHop(s)
                    | Ipv6ExtensionSlice::Routing(s)
                    | Ipv6ExtensionSlice::DestinationOptions(s) => {
                        ext_len += s.slice().len() as u32
                    }
                    Ipv6ExtensionSlice::Authentication(a) => ext_len += a.slice().len() as u32,
                }
            }
            let payload = v6.payload();
            // A zero payload length with a hop-by-hop header is a jumbogram (RFC 2675) or a
            // BIG TCP packet: the captured bytes are what we have.
            let len = if plen == 0 && !payload.payload.is_empty() {
                40 + ext_len + payload.payload.len() as u32
            } else {
                40 + plen
            };
            out.ip = Some(Ip {
                version: 6,
                src: Addr::V6(h.source()),
                dst: Addr::V6(h.destination()),
                proto: payload.ip_number.0,
                len,
                ttl: h.hop_limit(),
                frag_offset,
                more_fragments,
            });
            declared_payload = Some((len - 40).saturating_sub(ext_len));
        }
        Some(LaxNetSlice::Arp(_)) | None => {}
    }
    let fragmented = out
        .ip
        .is_some_and(|ip| ip.frag_offset != 0 || ip.more_fragments);
    let mut transport_header: Option<u32> = None;
    match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            out.src_port = Some(tcp.source_port());
            out.dst_port = Some(tcp.destination_port());
            let raw = tcp.header_slice();
            out.tcp_flags = Some(u16::from_be_bytes([raw[12], raw[13]]) & 0x0fff);
            out.tcp_seq = Some(tcp.sequence_number());
            transport_header = Some(u32::from(tcp.data_offset()) * 4);
            out.payload = payload_at(tcp.payload());
        }
        Some(TransportSlice::Udp(udp)) => {
            out.src_port = Some(udp.source_port());
            out.dst_port = Some(udp.destination_port());
            transport_header = Some(8);
            out.payload = payload_at(udp.payload());
        }
        Some(TransportSlice::Icmpv4(icmp)) => {
            out.icmp_type = Some(icmp.type_u8());
            out.icmp_code = Some(icmp.code_u8());
            transport_header = Some(icmp.header_len() as u32);
        }
        Some(TransportSlice::Icmpv6(icmp)) => {
            out.icmp_type = Some(icmp.type_u8());
            out.icmp_code = Some(icmp.code_u8());
            transport_header = Some(icmp.header_len() as u32);
        }
        Some(TransportSlice::Igmp(_)) | None => {}
    }
    // What etherparse did not slice but is (partly) there: SCTP's common header, and TCP/UDP
    // headers cut short by the snap length. Like tshark, show the fields whose bytes exist:
    // the ports (first 4 bytes of all three) and TCP's flags (bytes 12..14).
    if sliced.transport.is_none()
        && !fragmented
        && let (Some(ip), Some(net)) = (out.ip, &sliced.net)
    {
        let payload = match net {
            LaxNetSlice::Ipv4(v4) => v4.payload().payload,
            LaxNetSlice::Ipv6(v6) => v6.payload().payload,
            LaxNetSlice::Arp(_) => &[],
        };
        let proto = IpNumber(ip.proto);
        if matches!(proto, IpNumber::TCP | IpNumber::UDP | IpNumber::SCTP)
            && let (Some(s), Some(d)) = (be16(payload, 0), be16(payload, 2))
        {
            out.src_port = Some(s);
            out.dst_port = Some(d);
            transport_header = match proto {
                IpNumber::SCTP => Some(12),
                IpNumber::UDP => Some(8),
                _ => payload.get(12).map(|b| u32::from(b >> 4) * 4),
            };
            if proto == IpNumber::TCP {
                out.tcp_flags = be16(payload, 12).map(|f| f & 0x0fff);
            }
        }
    }
    out.payload_len = match (declared_payload, transport_header) {
        (Some(p), Some(h)) => Some(p.saturating_sub(h)),
        (Some(p), None) => Some(p),
        (None, _) => None,
    };
    if let Some((e, layer)) = &sliced.stop_err {
        out.error = Some(stop_reason(e, *layer));
    }
}

/// A payload slice's address and length, made relative to the frame by [`dissect`]. The
/// address is only compared, never dereferenced.
fn payload_at(p: &[u8]) -> Option<(usize, usize)> {
    (!p.is_empty()).then(|| (p.as_ptr().addr(), p.len()))
}

fn stop_reason(e: &err::packet::SliceError, layer: Layer) -> &'static str {
    use err::packet::SliceError;
    match (e, layer) {
        (SliceError::Len(_), Layer::TcpHeader) => "truncated TCP header",
        (SliceError::Len(_), Layer::UdpHeader) => "truncated UDP header",
        (
            SliceError::Len(_),
            Layer::Icmpv4 | Layer::Icmpv4Timestamp | Layer::Icmpv4TimestampReply,
        ) => "truncated ICMP header",
        (SliceError::Len(_), Layer::Icmpv6) => "truncated ICMPv6 header",
        (SliceError::Len(_), Layer::Igmp) => "truncated IGMP header",
        (SliceError::Len(_), _) => "truncated IPv6 extension header",
        (SliceError::Tcp(_), _) => "invalid TCP header",
        (SliceError::Ip(_), _) => "invalid IP extension header",
        _ => "malformed packet",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn tcp_v4_frame() -> Vec<u8> {
        let builder = PacketBuilder::ethernet2([1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12])
            .single_vlan(0x123.try_into().expect("vlan id"))
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 443, 1, 1024)
            .syn()
            .ack(5);
        let payload = [0u8; 10];
        let mut v = Vec::with_capacity(builder.size(payload.len()));
        builder.write(&mut v, &payload).expect("write");
        v
    }

    #[test]
    fn ethernet_vlan_ipv4_tcp() {
        let mut p = Packet::default();
        dissect(linktype::ETHERNET, &tcp_v4_frame(), &mut p);
        assert_eq!(p.error, None);
        // PacketBuilder::ethernet2(source, destination); on the wire the destination is first.
        assert_eq!(p.src_mac, Some([1, 2, 3, 4, 5, 6]));
        assert_eq!(p.dst_mac, Some([7, 8, 9, 10, 11, 12]));
        assert_eq!(p.vlans(), &[0x123]);
        assert_eq!(p.ethertype, Some(ETHERTYPE_IPV4));
        let ip = p.ip.expect("ip");
        assert_eq!(
            (ip.src, ip.dst),
            (Addr::V4([10, 0, 0, 1]), Addr::V4([10, 0, 0, 2]))
        );
        assert_eq!((ip.proto, ip.len, ip.ttl), (6, 20 + 20 + 10, 64));
        assert_eq!((p.src_port, p.dst_port), (Some(40000), Some(443)));
        assert_eq!(p.tcp_flags, Some(0x012));
        assert_eq!(p.payload_len, Some(10));
    }

    #[test]
    fn snaplen_cut_keeps_headers() {
        let frame = tcp_v4_frame();
        let mut p = Packet::default();
        // Cut inside the TCP header: the IP header is complete, and so are the ports.
        dissect(linktype::ETHERNET, &frame[..14 + 4 + 20 + 10], &mut p);
        assert!(p.ip.is_some());
        assert_eq!(p.error, Some("truncated TCP header"));
        assert_eq!(
            (p.src_port, p.dst_port, p.tcp_flags),
            (Some(40000), Some(443), None)
        );
        // Cut inside the options: the flags are there too.
        dissect(linktype::ETHERNET, &frame[..14 + 4 + 20 + 14], &mut p);
        assert_eq!(p.tcp_flags, Some(0x012));
        assert_eq!(p.error, Some("truncated TCP header"));
        // Cut inside the Ethernet header.
        dissect(linktype::ETHERNET, &frame[..9], &mut p);
        assert_eq!(p.dst_mac, Some([7, 8, 9, 10, 11, 12]));
        assert_eq!(p.src_mac, None);
        assert_eq!(p.error, Some("truncated Ethernet header"));
    }

    #[test]
    fn sll2_and_null_and_raw() {
        let builder = PacketBuilder::ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            5,
        )
        .udp(53, 5353);
        let mut ip6 = Vec::new();
        builder.write(&mut ip6, b"abc").expect("write");

        let mut sll2 = vec![
            0x86, 0xdd, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
        ];
        sll2.extend_from_slice(&ip6);
        let mut p = Packet::default();
        dissect(linktype::LINUX_SLL2, &sll2, &mut p);
        assert_eq!(p.ip.map(|i| (i.version, i.proto, i.ttl)), Some((6, 17, 5)));
        assert_eq!(
            (p.src_port, p.dst_port, p.payload_len),
            (Some(53), Some(5353), Some(3))
        );
        assert_eq!(p.src_mac, None);

        let mut null = vec![30, 0, 0, 0];
        null.extend_from_slice(&ip6);
        dissect(linktype::NULL, &null, &mut p);
        assert_eq!(p.ip.map(|i| i.version), Some(6));

        dissect(linktype::RAW, &ip6, &mut p);
        assert_eq!(p.src_port, Some(53));
        dissect(linktype::RAW, &[0x50, 1, 2], &mut p);
        assert_eq!(
            (p.ip, p.error),
            (None, Some("raw packet is neither IPv4 nor IPv6"))
        );
    }

    #[test]
    fn unknown_link_type_gives_empty_packet() {
        let mut p = Packet::default();
        dissect(4242, &[1, 2, 3], &mut p);
        assert_eq!(p, Packet::default());
    }
}
