//! The IP layer (IPv4, IPv6 and its extension headers, with etherparse's lax slicer) and the
//! transport headers; IP-in-IP, GRE and UDP tunnels are handed to the dispatcher from here,
//! and IP fragments to the reassembly.

use etherparse::err::Layer;
use etherparse::{IpNumber, LaxNetSlice, LaxSlicedPacket, TransportSlice, err};

use super::frag::Fragment;
use super::tunnel::{Decap, Encap, Inner};
use super::{Addr, FragKey, Ip, Walk, be16};

/// From the IP header on, with etherparse's lax slicer.
pub(super) fn ip(w: &mut Walk<'_, '_, '_>, data: &[u8]) {
    ip_walk(w, data)
}

fn ip_walk(w: &mut Walk<'_, '_, '_>, data: &[u8]) {
    let sliced = match LaxSlicedPacket::from_ip(data) {
        Ok(s) => s,
        Err(err::ip::LaxHeaderSliceError::Len(_)) => {
            w.p.error = Some("truncated IP header");
            return;
        }
        Err(err::ip::LaxHeaderSliceError::Content(e)) => {
            w.p.error = Some(match e {
                err::ip::HeaderError::UnsupportedIpVersion { .. } => "unknown IP version",
                err::ip::HeaderError::Ipv4HeaderLengthSmallerThanHeader { .. } => {
                    "IPv4 header length below 20 bytes"
                }
            });
            return;
        }
    };
    let mut declared_payload: Option<u32> = None;
    // The fragment header's identification and next header (IPv4: the header's own).
    let mut frag_id = 0u32;
    let mut frag_next = 0u8;
    match &sliced.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            frag_id = u32::from(h.identification());
            frag_next = h.protocol().0;
            let header_len = u32::from(h.ihl()) * 4;
            let total = u32::from(h.total_len());
            w.p.ip = Some(Ip {
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
            let exts = v6.extensions();
            let ext_len = exts.slice().len() as u32;
            let (mut frag_offset, mut more_fragments) = (0, false);
            if let Some(f) = v6_fragment_header(exts.first_header(), exts.slice()) {
                frag_offset = f.offset;
                more_fragments = f.more;
                frag_id = f.id;
                frag_next = f.next;
            }
            let payload = v6.payload();
            // A zero payload length with a hop-by-hop header is a jumbogram (RFC 2675) or a
            // BIG TCP packet: the captured bytes are what we have.
            let len = if plen == 0 && !payload.payload.is_empty() {
                40 + ext_len + payload.payload.len() as u32
            } else {
                40 + plen
            };
            w.p.ip = Some(Ip {
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
    let fragmented =
        w.p.ip
            .is_some_and(|ip| ip.frag_offset != 0 || ip.more_fragments);
    if fragmented && let (Some(ip), Some(net)) = (w.p.ip, &sliced.net) {
        w.p.payload_len = declared_payload;
        if let Some((e, layer)) = &sliced.stop_err {
            w.p.error = Some(stop_reason(e, *layer));
        }
        fragment(
            w,
            ip,
            net,
            frag_id,
            frag_next,
            declared_payload.unwrap_or(0),
        );
        return;
    }
    let mut transport_header: Option<u32> = None;
    let mut tunnel_port = None;
    match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            w.p.src_port = Some(tcp.source_port());
            w.p.dst_port = Some(tcp.destination_port());
            let raw = tcp.header_slice();
            w.p.tcp_flags = Some(u16::from_be_bytes([raw[12], raw[13]]) & 0x0fff);
            w.p.tcp_seq = Some(tcp.sequence_number());
            transport_header = Some(u32::from(tcp.data_offset()) * 4);
            w.p.payload = payload_at(tcp.payload());
        }
        Some(TransportSlice::Udp(udp)) => {
            w.p.src_port = Some(udp.source_port());
            w.p.dst_port = Some(udp.destination_port());
            transport_header = Some(8);
            w.p.payload = payload_at(udp.payload());
            tunnel_port = [udp.destination_port(), udp.source_port()]
                .into_iter()
                .find(|p| super::is_tunnel_port(*p));
        }
        Some(TransportSlice::Icmpv4(icmp)) => {
            w.p.icmp_type = Some(icmp.type_u8());
            w.p.icmp_code = Some(icmp.code_u8());
            transport_header = Some(icmp.header_len() as u32);
        }
        Some(TransportSlice::Icmpv6(icmp)) => {
            w.p.icmp_type = Some(icmp.type_u8());
            w.p.icmp_code = Some(icmp.code_u8());
            transport_header = Some(icmp.header_len() as u32);
        }
        Some(TransportSlice::Igmp(_)) | None => {}
    }
    // What etherparse did not slice but is (partly) there: SCTP's common header, and TCP/UDP
    // headers cut short by the snap length. Like tshark, show the fields whose bytes exist:
    // the ports (first 4 bytes of all three) and TCP's flags (bytes 12..14).
    if sliced.transport.is_none()
        && !fragmented
        && let (Some(ip), Some(net)) = (w.p.ip, &sliced.net)
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
            w.p.src_port = Some(s);
            w.p.dst_port = Some(d);
            transport_header = match proto {
                IpNumber::SCTP => Some(12),
                IpNumber::UDP => Some(8),
                _ => payload.get(12).map(|b| u32::from(b >> 4) * 4),
            };
            if proto == IpNumber::TCP {
                w.p.tcp_flags = be16(payload, 12).map(|f| f & 0x0fff);
            }
        }
    }
    w.p.payload_len = match (declared_payload, transport_header) {
        (Some(p), Some(h)) => Some(p.saturating_sub(h)),
        (Some(p), None) => Some(p),
        (None, _) => None,
    };
    if let Some((e, layer)) = &sliced.stop_err {
        w.p.error = Some(stop_reason(e, *layer));
    }
    // What the transport carries may be another packet.
    match (&sliced.transport, &sliced.net) {
        (Some(TransportSlice::Udp(udp)), _) => {
            if let Some(port) = tunnel_port {
                super::udp_tunnel(w, port, udp.payload());
            }
        }
        (None, Some(net)) if sliced.stop_err.is_none() => {
            let payload = ip_payload(net);
            match (w.p.ip.map(|ip| (ip.version, ip.proto)), payload.first()) {
                (Some((_, 47)), _) => super::gre(w, payload, false),
                (Some((v, 4)), Some(b)) if b >> 4 == 4 => ip_in_ip(w, v, 4, payload),
                (Some((v, 41)), Some(b)) if b >> 4 == 6 => ip_in_ip(w, v, 6, payload),
                _ => {}
            }
        }
        _ => {}
    }
}

/// An IPv6 fragment header's fields.
struct V6Fragment {
    /// Offset in bytes.
    offset: u16,
    more: bool,
    id: u32,
    next: u8,
}

/// The last fragment header among the IPv6 extension headers etherparse sliced (`first`: the
/// first one's type; `exts`: their bytes), walked here with bounds checks. etherparse's own
/// iterator (`Ipv6ExtensionsSlice::into_iter`) must not be used on a lax slice: when slicing
/// stopped at a damaged header (a second hop-by-hop header, one cut short by the snap length)
/// it follows the last header's next-header field past the end of the slice and reads out of
/// bounds (etherparse 0.21; found by the `link` fuzz target).
fn v6_fragment_header(first: Option<IpNumber>, exts: &[u8]) -> Option<V6Fragment> {
    let mut next = first?.0;
    let mut rest = exts;
    let mut found = None;
    loop {
        let field = rest.get(1).map(|&b| usize::from(b));
        let len = match (next, field) {
            // Hop-by-hop, routing, destination options: (length + 1) × 8 bytes.
            (0 | 43 | 60, Some(l)) => (l + 1) * 8,
            (44, _) => 8,
            // Authentication header: (length + 2) × 4 bytes.
            (51, Some(l)) => (l + 2) * 4,
            _ => return found,
        };
        // Past the headers etherparse sliced: done.
        let Some(header) = rest.get(..len) else {
            return found;
        };
        if next == 44 {
            let word = u16::from_be_bytes([header[2], header[3]]);
            found = Some(V6Fragment {
                offset: word & 0xfff8,
                more: word & 1 != 0,
                id: u32::from_be_bytes([header[4], header[5], header[6], header[7]]),
                next: header[0],
            });
        }
        next = header[0];
        rest = &rest[len..];
    }
}

fn ip_payload<'a>(net: &LaxNetSlice<'a>) -> &'a [u8] {
    match net {
        LaxNetSlice::Ipv4(v4) => v4.payload().payload,
        LaxNetSlice::Ipv6(v6) => v6.payload().payload,
        LaxNetSlice::Arp(_) => &[],
    }
}

/// IPv4 or IPv6 carried directly by IP (protocol 4 or 41: RFC 2003, RFC 4213, RFC 2473).
fn ip_in_ip(w: &mut Walk<'_, '_, '_>, outer: u8, inner: u8, payload: &[u8]) {
    let encap = match (outer, inner) {
        (4, 4) => Encap::Ip4in4,
        (4, _) => Encap::Ip6in4,
        (_, 4) => Encap::Ip4in6,
        _ => Encap::Ip6in6,
    };
    super::enter(
        w,
        Decap {
            encap,
            id: None,
            inner: Inner::Ip,
            data: payload,
        },
    );
}

/// An IP fragment: handed to the reassembly, which may give back the whole datagram to
/// decode in its place (this frame completed it). The row keeps the fragment's own IP
/// header fields (length, offset, flag), as tshark shows them; the transport and what it
/// carries come from the datagram.
fn fragment(
    w: &mut Walk<'_, '_, '_>,
    ip: Ip,
    net: &LaxNetSlice<'_>,
    id: u32,
    next: u8,
    declared: u32,
) {
    if w.datagram.is_some() {
        // A fragment inside a reassembled datagram is not reassembled again.
        return;
    }
    let Some(frags) = w.frags.as_deref_mut() else {
        return;
    };
    let data = ip_payload(net);
    // IPv6: a fixed header carrying the fragment header's next header stands for the
    // unfragmentable part; IPv4: the header as it is.
    let mut v6_header = [0u8; 40];
    let header: &[u8] = match net {
        LaxNetSlice::Ipv4(v4) => v4.header().slice(),
        LaxNetSlice::Ipv6(v6) => {
            v6_header.copy_from_slice(v6.header().slice());
            v6_header[6] = next;
            &v6_header
        }
        LaxNetSlice::Arp(_) => return,
    };
    let key = FragKey {
        src: ip.src,
        dst: ip.dst,
        id,
        proto: if ip.version == 4 { next } else { 0 },
        tunnel: (w.p.env.innermost(), w.p.env.tunnel_id),
    };
    let frag = Fragment {
        offset: u32::from(ip.frag_offset),
        more: ip.more_fragments,
        data,
        whole: data.len() as u32 == declared,
        header,
    };
    let Some(datagram) = frags.fragment(&key, &frag) else {
        return;
    };
    w.datagram = Some(datagram);
    let depth = w.p.env.depth;
    let error = w.p.error;
    ip_walk(w, datagram);
    if w.p.env.depth == depth
        && let Some(inner) = &mut w.p.ip
    {
        inner.len = ip.len;
        inner.frag_offset = ip.frag_offset;
        inner.more_fragments = ip.more_fragments;
    }
    w.p.error = w.p.error.or(error);
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
