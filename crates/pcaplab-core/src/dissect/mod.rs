//! Link layer → IP → transport, through tunnels, without allocating.
//!
//! Each layer is a small function that decodes its header and hands the bytes it carries
//! back to the dispatch here, the way Zeek's packet analyzers are arranged: [`link`] walks the
//! link layers (Ethernet with VLAN/QinQ, MPLS and PPPoE, Linux SLL/SLL2, BSD null/loop, raw
//! IP, PPP, IEEE 802.11 with or without radiotap), [`ip`] the IP header and the transport
//! (etherparse's lax slicer, so a packet cut short by the snap length still yields every
//! header it holds), [`tunnel`] each tunnel header (VXLAN, Geneve, GRE and ERSPAN, GTP-U,
//! Teredo, AYIYA; IP-in-IP is in [`ip`]). A tunnel's inner packet is decoded like a frame of
//! its own, up to [`MAX_TUNNELS`] deep: the [`Packet`]'s fields describe the innermost
//! packet — the conversation — and its [`Envelope`] keeps the tunnels and the outermost IP
//! header. IP fragments are reassembled by [`defrag`] (in file order, on the reading thread)
//! and a completed datagram is decoded in place of the fragment that completed it.
//!
//! Whatever the bytes, the result is a [`Packet`]: fields that are not there stay `None` and
//! `error` says, in a few words, why decoding stopped early.

pub mod defrag;
pub mod frag;
mod ip;
mod link;
pub mod tunnel;

pub use tunnel::Encap;
use tunnel::be16;

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

/// Most tunnels decoded inside one another; a deeper one is left undecoded, with an error.
pub const MAX_TUNNELS: usize = 8;

/// An IP address as raw bytes (formatting to text happens once, in the column builder).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
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

/// The innermost IP header.
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

/// An IP header that carried a tunnel (the outermost one, or one inside another tunnel), and
/// what that tunnel's own flow needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Outer {
    pub src: Addr,
    pub dst: Addr,
    /// The outer IP protocol (17 for UDP tunnels, 47 GRE, 4 / 41 IP-in-IP).
    pub proto: u8,
    /// UDP ports, for tunnels over UDP.
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    /// The VLAN tags of the frame it came in (outermost two).
    pub vlans: [u16; 2],
    pub vlan_count: u8,
    /// Its transport payload (the tunnel header and all it carries), as declared.
    pub payload_len: u32,
}

/// The IP header that carried a tunnel nested in another, and the tunnel it came through
/// (type and identifier, which key its flow as they key an inner packet's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hop {
    pub carrier: Outer,
    pub within: (Encap, Option<u32>),
}

/// The tunnels a packet came through, outermost first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Envelope {
    layers: [Encap; MAX_TUNNELS],
    depth: u8,
    /// The innermost tunnel identifier: VNI, TEID, GRE key, ERSPAN session, PPTP call id.
    pub tunnel_id: Option<u32>,
    /// The outermost IP header (the first tunnel's carrier).
    pub outer: Option<Outer>,
    /// `hops[k - 1]`: the IP header that carried tunnel `k` (k ≥ 1) inside tunnel `k - 1`;
    /// None when it was not carried by IP, or beyond the depth.
    hops: [Option<Hop>; MAX_TUNNELS - 1],
}

impl Envelope {
    pub fn layers(&self) -> &[Encap] {
        &self.layers[..usize::from(self.depth)]
    }

    pub fn is_empty(&self) -> bool {
        self.depth == 0
    }

    /// The innermost encapsulation (`Encap::None` without any).
    pub fn innermost(&self) -> Encap {
        self.layers().last().copied().unwrap_or_default()
    }

    /// Every tunnel's carrier, outermost first: (layer, the IP header that carried it, the
    /// tunnel that header came through). Layer 0 is the outermost header's.
    pub fn carriers(&self) -> impl Iterator<Item = (usize, &Outer, (Encap, Option<u32>))> {
        let outer = self
            .outer
            .as_ref()
            .filter(|_| self.depth > 0)
            .map(|o| (0, o, (Encap::None, None)));
        let nested = usize::from(self.depth).saturating_sub(1);
        let hops = self.hops[..nested]
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.as_ref().map(|h| (i + 1, &h.carrier, h.within)));
        outer.into_iter().chain(hops)
    }

    /// The envelope of what came through the first `layers` tunnels only: the envelope of
    /// tunnel `layers`'s own carrier (see [`Envelope::hops`]).
    pub fn outer_layers(&self, layers: usize) -> Envelope {
        let depth = layers.min(usize::from(self.depth));
        let mut e = Envelope {
            layers: self.layers,
            depth: depth as u8,
            tunnel_id: None,
            outer: self.outer,
            hops: [None; MAX_TUNNELS - 1],
        };
        e.hops[..depth.saturating_sub(1)].copy_from_slice(&self.hops[..depth.saturating_sub(1)]);
        e.layers[depth..].fill(Encap::None);
        e.tunnel_id = match depth {
            0 => None,
            d if d == usize::from(self.depth) => self.tunnel_id,
            d => self.hops[d - 1].and_then(|h| h.within.1),
        };
        e
    }

    /// The IP header that carried the innermost tunnel (nearest first, if one is unknown),
    /// and the tunnel that header came through: the flow inside has its flow as parent.
    pub fn parent(&self) -> Option<(&Outer, (Encap, Option<u32>))> {
        let nested = usize::from(self.depth).saturating_sub(1);
        self.hops[..nested]
            .iter()
            .rev()
            .find_map(|h| h.as_ref().map(|h| (&h.carrier, h.within)))
            .or_else(|| Some((self.outer.as_ref()?, (Encap::None, None))))
    }
}

/// Everything we decode from one frame; `None` where the packet has no such field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Packet {
    /// The innermost Ethernet header's addresses (the outer frame's when the innermost
    /// packet was carried without one, as in GRE, IP-in-IP or GTP-U).
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
    /// Where the TCP or UDP payload is: (offset, captured length) in the frame, or in the
    /// reassembled datagram when `payload_in_datagram`.
    pub payload: Option<(usize, usize)>,
    pub payload_in_datagram: bool,
    /// The tunnels the packet came through.
    pub env: Envelope,
    /// Why decoding stopped early, if it did.
    pub error: Option<&'static str>,
}

impl Packet {
    pub fn vlans(&self) -> &[u16] {
        &self.vlan_ids[..usize::from(self.vlan_count)]
    }
}

/// What identifies the datagram an IP fragment belongs to: its addresses, identification
/// and (IPv4) protocol, and the tunnel it came through (so that overlapping address spaces
/// in different VNIs stay apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: Addr,
    pub dst: Addr,
    pub id: u32,
    pub proto: u8,
    pub tunnel: (Encap, Option<u32>),
}

/// Where reassembled datagrams come from while a frame is walked.
pub trait Fragments<'d> {
    /// The frame holds a fragment of datagram `key`. Returns the reassembled datagram (a
    /// whole IP packet) to decode in the fragment's place when this frame completed one.
    fn fragment(&mut self, key: &FragKey, frag: &frag::Fragment<'_>) -> Option<&'d [u8]>;
}

/// One frame's walk: the packet being filled, and where reassembled datagrams come from.
struct Walk<'p, 'd, 'h> {
    p: &'p mut Packet,
    frags: Option<&'h mut dyn Fragments<'d>>,
    /// The reassembled datagram decoded in this walk (one per frame at most).
    datagram: Option<&'d [u8]>,
}

/// Decode one frame of the given link type into `out` (which is reset first). Fragments are
/// decoded as they are (see [`dissect_with`]).
pub fn dissect(link_type: u16, data: &[u8], out: &mut Packet) {
    dissect_with(link_type, data, out, None);
}

/// [`dissect`], handing IP fragments to `frags`, which may give back the reassembled datagram
/// to decode instead.
pub fn dissect_with<'d>(
    link_type: u16,
    data: &'d [u8],
    out: &mut Packet,
    frags: Option<&mut dyn Fragments<'d>>,
) {
    *out = Packet::default();
    let mut w = Walk {
        p: out,
        frags,
        datagram: None,
    };
    link::dissect_link(&mut w, link_type, data);
    let datagram = w.datagram;
    // `ip` recorded the payload's address; make it an offset into the buffer that holds it.
    if let Some((at, len)) = out.payload {
        let within = |buf: &[u8]| {
            at.checked_sub(buf.as_ptr().addr())
                .filter(|off| off.saturating_add(len) <= buf.len())
        };
        out.payload = match (within(data), datagram.and_then(within)) {
            (Some(off), _) => Some((off, len)),
            (None, Some(off)) => {
                out.payload_in_datagram = true;
                Some((off, len))
            }
            _ => None,
        };
    }
}

/// Enter a tunnel: record it in the envelope, then decode what it carries as the packet.
fn enter(w: &mut Walk<'_, '_, '_>, d: tunnel::Decap<'_>) {
    // A payload type not decoded here (a GRE keepalive, ARP, ...): the packet stays the outer.
    if let tunnel::Inner::EtherType(t) = d.inner
        && !link::is_known_ethertype(t)
    {
        return;
    }
    if push(w.p, d.encap, d.id) {
        carry(w, d.inner, d.data);
    }
}

/// Record a tunnel layer and clear the outer packet's transport fields, which the inner
/// packet's replace; false when tunnels are nested too deep to go on.
fn push(p: &mut Packet, encap: Encap, id: Option<u32>) -> bool {
    let depth = usize::from(p.env.depth);
    if depth >= MAX_TUNNELS {
        p.error = Some("tunnels nested too deep");
        return false;
    }
    if let Some(ip) = p.ip {
        let mut vlans = [0; 2];
        for (slot, v) in vlans.iter_mut().zip(p.vlans()) {
            *slot = *v;
        }
        let carrier = Outer {
            src: ip.src,
            dst: ip.dst,
            proto: ip.proto,
            src_port: p.src_port,
            dst_port: p.dst_port,
            vlans,
            vlan_count: p.vlan_count.min(2),
            payload_len: p.payload_len.unwrap_or(0),
        };
        match depth {
            0 => p.env.outer = Some(carrier),
            d => {
                p.env.hops[d - 1] = Some(Hop {
                    carrier,
                    within: (p.env.layers[d - 1], p.env.tunnel_id),
                })
            }
        }
    }
    p.env.layers[depth] = encap;
    p.env.depth += 1;
    if id.is_some() {
        p.env.tunnel_id = id;
    }
    // The inner packet's fields replace the outer's.
    p.ip = None;
    p.src_port = None;
    p.dst_port = None;
    p.tcp_flags = None;
    p.tcp_seq = None;
    p.icmp_type = None;
    p.icmp_code = None;
    p.payload_len = None;
    p.payload = None;
    true
}

/// Decode the bytes a tunnel carries.
fn carry(w: &mut Walk<'_, '_, '_>, inner: tunnel::Inner, data: &[u8]) {
    let p = &mut *w.p;
    match inner {
        tunnel::Inner::Ethernet => {
            p.src_mac = None;
            p.dst_mac = None;
            p.ethertype = None;
            p.vlan_count = 0;
            link::ethernet(w, data);
        }
        tunnel::Inner::EtherType(t) => link::ethertype_chain(w, t, data),
        tunnel::Inner::Ip => link::raw_ip(w, data),
        tunnel::Inner::Ppp => link::ppp(w, data),
        // Decoded by the GRE handler before entering; never carried here.
        tunnel::Inner::Erspan { .. } => p.error = Some("ERSPAN header outside GRE"),
    }
}

/// A GRE packet (over IP, or over UDP port 4754): GRE, then ERSPAN where it carries one.
fn gre(w: &mut Walk<'_, '_, '_>, data: &[u8], over_udp: bool) {
    let outer = match tunnel::gre::parse(data, over_udp) {
        Ok(d) => d,
        Err(e) => {
            w.p.error = Some(e);
            return;
        }
    };
    if let tunnel::Inner::Erspan { proto, sequenced } = outer.inner {
        match tunnel::gre::erspan(proto, sequenced, outer.data) {
            Ok(inner) => {
                if push(w.p, outer.encap, outer.id) {
                    enter(w, inner);
                }
            }
            Err(e) => w.p.error = Some(e),
        }
        return;
    }
    enter(w, outer);
}

/// UDP ports whose payload is a tunnel header (either port may be the tunnel's).
fn udp_tunnel(w: &mut Walk<'_, '_, '_>, port: u16, payload: &[u8]) -> bool {
    let decap = match port {
        4789 | 8472 => tunnel::vxlan::parse(payload).map(Some),
        6081 => tunnel::geneve::parse(payload).map(Some),
        4754 => {
            gre(w, payload, true);
            return true;
        }
        2152 => tunnel::gtp::parse(payload),
        3544 => tunnel::teredo::parse(payload).map(Some),
        5072 => tunnel::ayiya::parse(payload),
        _ => return false,
    };
    match decap {
        Ok(Some(d)) => enter(w, d),
        Ok(None) => {}
        Err(e) => w.p.error = Some(e),
    }
    true
}

/// Whether either UDP port is a tunnel's.
fn is_tunnel_port(port: u16) -> bool {
    matches!(port, 4789 | 8472 | 6081 | 4754 | 2152 | 3544 | 5072)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;
    use link::ETHERTYPE_IPV4;

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

    /// An IPv6 header followed by `exts` (the payload length says exactly those bytes).
    fn ipv6_with(next: u8, exts: &[u8]) -> Vec<u8> {
        let mut v = vec![0x60, 0, 0, 0];
        v.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        v.extend_from_slice(&[next, 64]);
        v.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        v.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        v.extend_from_slice(exts);
        v
    }

    /// Extension header chains that etherparse's lax slicer stops in the middle of: its
    /// iterator over the sliced headers would follow the last one's next header past the end
    /// of the slice (an out-of-bounds read; found by the `link` fuzz target).
    #[test]
    fn ipv6_extension_chain_stopped_early() {
        let mut p = Packet::default();
        // A second hop-by-hop header (allowed only first).
        dissect(
            linktype::RAW,
            &ipv6_with(0, &[0, 0, 1, 4, 0, 0, 0, 0]),
            &mut p,
        );
        assert_eq!(p.ip.map(|ip| (ip.version, ip.len)), Some((6, 48)));
        assert!(p.error.is_some());
        // Destination options cut short by the snap length after a hop-by-hop header.
        let cut = ipv6_with(0, &[60, 0, 1, 4, 0, 0, 0, 0, 17, 1, 0, 0]);
        dissect(linktype::RAW, &cut, &mut p);
        assert_eq!(p.error, Some("truncated IPv6 extension header"));
        // A fragment header before the damage still makes the packet a fragment.
        let frag = ipv6_with(0, &[44, 0, 1, 4, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0x12, 0x34]);
        dissect(linktype::RAW, &frag, &mut p);
        let ip = p.ip.expect("ip");
        assert_eq!((ip.frag_offset, ip.more_fragments), (8, true));
    }
}
