//! Link layers down to IP: Ethernet (VLAN/QinQ, MPLS, PPPoE, 802.2 LLC/SNAP), Linux SLL and
//! SLL2, BSD null/loop, raw IP, PPP, IEEE 802.11 with or without radiotap. Inside a tunnel the
//! same functions decode the inner frame, so VLAN tags, MPLS labels and PPPoE work at any depth.

use super::{MAX_VLANS, Walk, be16, ip::ip, linktype};

pub(super) const ETHERTYPE_IPV4: u16 = 0x0800;
pub(super) const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
const ETHERTYPE_MPLS: u16 = 0x8847;
const ETHERTYPE_MPLS_MC: u16 = 0x8848;
const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;
const ETHERTYPE_CMD: u16 = 0x8909;

fn mac(b: &[u8]) -> Option<[u8; 6]> {
    b.get(..6)?.try_into().ok()
}

pub(super) fn dissect_link(w: &mut Walk<'_, '_, '_>, link_type: u16, data: &[u8]) {
    match link_type {
        linktype::ETHERNET => ethernet(w, data),
        linktype::LINUX_SLL => match be16(data, 14) {
            Some(proto) if data.len() >= 16 => {
                // ARPHRD_NETLINK (824) and the "protocol" values below 0x0600 are not
                // EtherTypes (802.2 LLC, CAN, ...).
                if be16(data, 2) != Some(824) && proto >= 0x0600 {
                    ethertype_chain(w, proto, &data[16..]);
                }
            }
            _ => w.p.error = Some("truncated Linux SLL header"),
        },
        linktype::LINUX_SLL2 => match be16(data, 0) {
            Some(proto) if data.len() >= 20 => {
                if be16(data, 8) != Some(824) && proto >= 0x0600 {
                    ethertype_chain(w, proto, &data[20..]);
                }
            }
            _ => w.p.error = Some("truncated Linux SLL2 header"),
        },
        linktype::NULL | linktype::LOOP => null_loop(w, link_type, data),
        linktype::RAW | linktype::RAW_OPENBSD | linktype::RAW_BSDOS => raw_ip(w, data),
        linktype::IPV4 => ip(w, data),
        linktype::IPV6 => ip(w, data),
        linktype::PPP | linktype::PPP_HDLC => ppp(w, data),
        linktype::PPP_ETHER => {
            // PPPoE header (6 bytes) then PPP.
            match data.get(6..) {
                Some(rest) => ppp(w, rest),
                None => w.p.error = Some("truncated PPPoE header"),
            }
        }
        linktype::IEEE802_11 => ieee802_11(w, data),
        linktype::IEEE802_11_RADIOTAP => radiotap(w, data),
        _ => {}
    }
}

pub(super) fn ethernet(w: &mut Walk<'_, '_, '_>, data: &[u8]) {
    if data.len() < 14 {
        w.p.error = Some("truncated Ethernet header");
        // tshark still shows the addresses it has.
        w.p.dst_mac = mac(data);
        w.p.src_mac = data.get(6..).and_then(mac);
        return;
    }
    w.p.dst_mac = mac(data);
    w.p.src_mac = mac(&data[6..]);
    let type_or_len = u16::from_be_bytes([data[12], data[13]]);
    if type_or_len >= 0x0600 {
        ethertype_chain(w, type_or_len, &data[14..]);
    } else {
        // IEEE 802.3 length field: an 802.2 LLC header follows.
        llc(w, &data[14..]);
    }
}

/// 802.2 LLC; with SNAP and an EtherType OUI the payload is an EtherType payload.
pub(super) fn llc(w: &mut Walk<'_, '_, '_>, data: &[u8]) {
    if let [0xaa, 0xaa, 0x03, 0, 0, 0, t0, t1, ..] = data {
        ethertype_chain(w, u16::from_be_bytes([*t0, *t1]), &data[8..]);
    }
}

/// Follow EtherTypes through VLAN tags, MPLS labels and PPPoE down to IP.
pub(super) fn ethertype_chain(w: &mut Walk<'_, '_, '_>, mut ethertype: u16, mut data: &[u8]) {
    loop {
        match ethertype {
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD => {
                let (Some(tci), Some(next)) = (be16(data, 0), be16(data, 2)) else {
                    w.p.ethertype = Some(ethertype);
                    w.p.error = Some("truncated VLAN tag");
                    return;
                };
                if usize::from(w.p.vlan_count) < MAX_VLANS {
                    w.p.vlan_ids[usize::from(w.p.vlan_count)] = tci & 0x0fff;
                    w.p.vlan_count += 1;
                }
                ethertype = next;
                data = &data[4..];
            }
            // Cisco MetaData (a security group tag): version, length, option, SGT, then the
            // EtherType of what follows.
            ETHERTYPE_CMD => {
                let Some(next) = be16(data, 6) else {
                    w.p.ethertype = Some(ethertype);
                    w.p.error = Some("truncated Cisco MetaData header");
                    return;
                };
                ethertype = next;
                data = &data[8..];
            }
            _ => break,
        }
    }
    w.p.ethertype = Some(ethertype);
    match ethertype {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => ip(w, data),
        ETHERTYPE_MPLS | ETHERTYPE_MPLS_MC => mpls(w, data),
        ETHERTYPE_PPPOE_SESSION => match data.get(6..) {
            Some(rest) => ppp_protocol(w, rest),
            None => w.p.error = Some("truncated PPPoE header"),
        },
        _ => {}
    }
}

/// MPLS label stack; after the bottom label, IPv4 or IPv6 by the version nibble, as tshark
/// guesses when no pseudowire is configured.
/// Whether an EtherType names something decoded here (a tunnel carrying anything else is not
/// entered: its packet keeps the outer fields).
pub(super) fn is_known_ethertype(t: u16) -> bool {
    matches!(
        t,
        ETHERTYPE_IPV4
            | ETHERTYPE_IPV6
            | ETHERTYPE_VLAN
            | ETHERTYPE_QINQ
            | ETHERTYPE_QINQ_OLD
            | ETHERTYPE_CMD
            | ETHERTYPE_MPLS
            | ETHERTYPE_MPLS_MC
            | ETHERTYPE_PPPOE_SESSION
    )
}

pub(super) fn mpls(w: &mut Walk<'_, '_, '_>, mut data: &[u8]) {
    loop {
        let Some(entry) = data.get(..4) else {
            w.p.error = Some("truncated MPLS label stack");
            return;
        };
        let bottom = entry[2] & 0x01 != 0;
        data = &data[4..];
        if bottom {
            break;
        }
    }
    match data.first().map(|b| b >> 4) {
        Some(4) | Some(6) => ip(w, data),
        _ => {}
    }
}

pub(super) fn raw_ip(w: &mut Walk<'_, '_, '_>, data: &[u8]) {
    match data.first().map(|b| b >> 4) {
        Some(4) | Some(6) => ip(w, data),
        Some(_) => w.p.error = Some("raw packet is neither IPv4 nor IPv6"),
        None => w.p.error = Some("empty packet"),
    }
}

/// BSD loopback: a 4-byte address family, host byte order for NULL, network order for LOOP.
pub(super) fn null_loop(w: &mut Walk<'_, '_, '_>, link_type: u16, data: &[u8]) {
    let Some(fam) = data.get(..4) else {
        w.p.error = Some("truncated loopback header");
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
        2 | 10 | 23 | 24 | 28 | 30 => raw_ip(w, data),
        _ => {}
    }
}

/// PPP in HDLC-like framing (optional FF 03) with a 1- or 2-byte protocol field.
pub(super) fn ppp(w: &mut Walk<'_, '_, '_>, data: &[u8]) {
    let data = match data {
        [0xff, 0x03, rest @ ..] => rest,
        _ => data,
    };
    ppp_protocol(w, data);
}

pub(super) fn ppp_protocol(w: &mut Walk<'_, '_, '_>, data: &[u8]) {
    // A protocol field with an odd first byte is compressed to one byte.
    let (proto, rest) = match data {
        [p, rest @ ..] if p & 1 == 1 => (u16::from(*p), rest),
        [p0, p1, rest @ ..] => (u16::from_be_bytes([*p0, *p1]), rest),
        _ => {
            w.p.error = Some("truncated PPP header");
            return;
        }
    };
    match proto {
        0x0021 | 0x0057 => ip(w, rest),
        _ => {}
    }
}

/// Radiotap header (its length is in bytes 2..4, little-endian), then 802.11.
pub(super) fn radiotap(w: &mut Walk<'_, '_, '_>, data: &[u8]) {
    let Some(len) = data
        .get(2..4)
        .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
    else {
        w.p.error = Some("truncated radiotap header");
        return;
    };
    match data.get(len..) {
        Some(rest) if len >= 8 => ieee802_11(w, rest),
        _ => w.p.error = Some("truncated radiotap header"),
    }
}

/// IEEE 802.11 data frames: the header, then LLC/SNAP, then an EtherType payload.
pub(super) fn ieee802_11(w: &mut Walk<'_, '_, '_>, data: &[u8]) {
    let Some(&[fc0, fc1]) = data.get(..2).and_then(|b| <&[u8; 2]>::try_from(b).ok()) else {
        w.p.error = Some("truncated 802.11 header");
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
        Some(payload) => llc(w, payload),
        None => w.p.error = Some("truncated 802.11 header"),
    }
}
