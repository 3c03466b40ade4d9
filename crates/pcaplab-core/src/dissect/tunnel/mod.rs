//! Tunnel headers: each file decodes one family's header and hands back what it carries.
//!
//! A tunnel decoder is a pure function from the bytes after the outer header (a UDP payload,
//! a GRE packet, ...) to a [`Decap`]: which encapsulation it was, the tunnel's identifier
//! where it has one, and what the inner bytes are ([`Inner`]). The dispatcher in
//! [`super`] records the envelope and decodes the inner bytes as a packet of their own. A
//! header that does not parse is an `Err` with a few words saying why; the dispatcher then
//! keeps the outer packet as it is.

pub mod ayiya;
pub mod geneve;
pub mod gre;
pub mod gtp;
pub mod teredo;
pub mod vxlan;

/// An encapsulation layer, as the `tunnels` column names it.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[repr(u8)]
pub enum Encap {
    #[default]
    None = 0,
    Vxlan,
    Geneve,
    /// GRE (RFC 2784/2890) directly over IP.
    Gre,
    /// GRE over UDP (RFC 8086, port 4754).
    GreUdp,
    /// PPTP's enhanced GRE (version 1), carrying PPP.
    Pptp,
    /// ERSPAN type I: no ERSPAN header, the mirrored Ethernet frame follows GRE directly.
    Erspan1,
    Erspan2,
    Erspan3,
    /// GTP-U version 1 (G-PDU).
    GtpU,
    /// IPv4 in IPv4 (IP protocol 4).
    Ip4in4,
    /// IPv6 in IPv4 (IP protocol 41).
    Ip6in4,
    /// IPv4 in IPv6 (next header 4).
    Ip4in6,
    /// IPv6 in IPv6 (next header 41).
    Ip6in6,
    Teredo,
    Ayiya,
}

impl Encap {
    /// Every kind but `None`, in declaration order.
    pub const ALL: [Encap; 15] = [
        Encap::Vxlan,
        Encap::Geneve,
        Encap::Gre,
        Encap::GreUdp,
        Encap::Pptp,
        Encap::Erspan1,
        Encap::Erspan2,
        Encap::Erspan3,
        Encap::GtpU,
        Encap::Ip4in4,
        Encap::Ip6in4,
        Encap::Ip4in6,
        Encap::Ip6in6,
        Encap::Teredo,
        Encap::Ayiya,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Encap::None => "",
            Encap::Vxlan => "vxlan",
            Encap::Geneve => "geneve",
            Encap::Gre => "gre",
            Encap::GreUdp => "gre-udp",
            Encap::Pptp => "pptp",
            Encap::Erspan1 => "erspan1",
            Encap::Erspan2 => "erspan2",
            Encap::Erspan3 => "erspan3",
            Encap::GtpU => "gtpu",
            Encap::Ip4in4 => "4in4",
            Encap::Ip6in4 => "6in4",
            Encap::Ip4in6 => "4in6",
            Encap::Ip6in6 => "6in6",
            Encap::Teredo => "teredo",
            Encap::Ayiya => "ayiya",
        }
    }
}

/// What a tunnel header carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inner {
    /// An Ethernet frame (VXLAN, Geneve 0x6558, GRE 0x6558, ERSPAN).
    Ethernet,
    /// The payload of this EtherType (GRE's and Geneve's protocol type: 0x0800, 0x86dd,
    /// 0x8847 MPLS, 0x8100 VLAN, ...).
    EtherType(u16),
    /// An IP packet, IPv4 or IPv6 by its version nibble (GTP-U, Teredo, AYIYA).
    Ip,
    /// A PPP packet starting at its protocol field (PPTP's enhanced GRE; HDLC address and
    /// control bytes FF 03 may precede it).
    Ppp,
    /// An ERSPAN header (GRE protocol 0x88be for types I/II, 0x22eb for type III), decoded by
    /// [`gre::erspan`]; `sequenced` says whether the GRE header had a sequence number
    /// (type I has none).
    Erspan { proto: u16, sequenced: bool },
}

/// One decoded tunnel header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decap<'a> {
    pub encap: Encap,
    /// VXLAN/Geneve VNI, GTP-U TEID, GRE key, ERSPAN session id, PPTP call id.
    pub id: Option<u32>,
    pub inner: Inner,
    /// The bytes the header carries.
    pub data: &'a [u8],
}

/// Why a tunnel header was not decoded (the packet keeps its outer fields).
pub type DecapError = &'static str;

pub(crate) fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

pub(crate) fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Whether `inner` lies inside `outer` (the decoders' property tests: what a header hands back
/// is always a part of the bytes it was given).
#[cfg(test)]
pub(crate) fn within(outer: &[u8], inner: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr_range(), inner.as_ptr_range());
    o.start <= i.start && i.end <= o.end
}
