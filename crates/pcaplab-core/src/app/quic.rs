//! QUIC client Initial packets: the TLS ClientHello inside them.
//!
//! A QUIC client opens a connection with Initial packets whose keys derive from the
//! Destination Connection ID it chose (RFC 9001 §5.2), so anyone on the path can read them, as
//! tshark and Zeek do: HKDF-Extract with the version's salt, HKDF-Expand-Label "client in",
//! then the packet key, IV and header-protection key; the header protection is removed with an
//! AES-128-ECB mask of a sample of the ciphertext (§5.4), and the payload is opened with
//! AES-128-GCM, the header as associated data (§5.3). The plaintext's CRYPTO frames carry the
//! TLS handshake (RFC 9001 §4): the ClientHello, often over several frames, packets and
//! datagrams (Chrome's spans two datagrams, its frames out of order), reassembled here by
//! offset in a [`Connection`] and handed to the TLS ClientHello code in a TLS record of its own.
//!
//! Versions: 1 (RFC 9000), 2 (RFC 9369: its own packet type bits, salt and labels) and the
//! drafts tshark and Zeek still read, 23 to 34 (`0xff000017`..=`0xff000022`, with their
//! salts), and Facebook's mvfst versions based on draft 27. The cryptography is aws-lc-rs's.
//!
//! The ClientHello is read by the TLS-over-TCP code ([`tls_client_hello`], told that it came
//! over QUIC, so that its JA4 starts with `q`), and `AppFields::quic_version` is set
//! afterwards.
//!
//! Never panics on any input bytes: every length is checked, every failure is a `None` or a
//! count.

use aws_lc_rs::aead::quic::{AES_128, HeaderProtectionKey};
use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, KeyType, Prk, Salt};

use super::{AppFields, Parsed, tls_client_hello};

/// QUIC version 1 (RFC 9000).
pub const VERSION_1: u32 = 0x0000_0001;
/// QUIC version 2 (RFC 9369).
pub const VERSION_2: u32 = 0x6b33_43cf;

/// Most CRYPTO stream bytes kept per connection: the ClientHello must end before this offset.
pub const MAX_CRYPTO: usize = 64 * 1024;

/// RFC 9001 §5.2, also drafts 33 and 34.
const SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
];
/// RFC 9369 §3.3.1.
const SALT_V2: [u8; 20] = [
    0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb,
    0xf9, 0xbd, 0x2e, 0xd9,
];
/// draft-ietf-quic-tls-29 to -32.
const SALT_DRAFT_29: [u8; 20] = [
    0xaf, 0xbf, 0xec, 0x28, 0x99, 0x93, 0xd2, 0x4c, 0x9e, 0x97, 0x86, 0xf1, 0x9c, 0x61, 0x11, 0xe0,
    0x43, 0x90, 0xa8, 0x99,
];
/// draft-ietf-quic-tls-23 to -28 (and mvfst's versions based on draft 27).
const SALT_DRAFT_23: [u8; 20] = [
    0xc3, 0xee, 0xf7, 0x12, 0xc7, 0x2e, 0xbb, 0x5a, 0x11, 0xa7, 0xd2, 0x43, 0x2b, 0xb4, 0x63, 0x65,
    0xbe, 0xf9, 0xf5, 0x02,
];

/// What pcaplab needs to know about a QUIC version to read its client Initials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    pub number: u32,
    salt: &'static [u8; 20],
    /// Labels of the packet key, IV and header-protection key (HKDF-Expand-Label).
    labels: [&'static [u8]; 3],
    /// The long header's two type bits of an Initial packet (v1: 0, v2: 1).
    initial_type: u8,
    /// Of a Retry packet, which has no Length field (v1: 3, v2: 0).
    retry_type: u8,
}

const LABELS_V1: [&[u8]; 3] = [b"quic key", b"quic iv", b"quic hp"];

/// Version 1's parameters (the drafts differ from it in their salt only).
const V1_TEMPLATE: Version = Version {
    number: VERSION_1,
    salt: &SALT_V1,
    labels: LABELS_V1,
    initial_type: 0,
    retry_type: 3,
};
const LABELS_V2: [&[u8]; 3] = [b"quicv2 key", b"quicv2 iv", b"quicv2 hp"];

/// The version `number`, when pcaplab can read its Initial packets.
pub fn version(number: u32) -> Option<Version> {
    let v1 = |salt| Version {
        number,
        salt,
        ..V1_TEMPLATE
    };
    match number {
        VERSION_1 | 0xff00_0021 | 0xff00_0022 => Some(v1(&SALT_V1)),
        VERSION_2 => Some(Version {
            number,
            salt: &SALT_V2,
            labels: LABELS_V2,
            initial_type: 1,
            retry_type: 0,
        }),
        0xff00_001d..=0xff00_0020 => Some(v1(&SALT_DRAFT_29)),
        0xff00_0017..=0xff00_001c | 0xface_b002 | 0xface_b00e => Some(v1(&SALT_DRAFT_23)),
        _ => None,
    }
}

/// The version of the QUIC long-header packet a UDP payload starts with, when it is one
/// pcaplab knows (see [`version`]) and the header's connection IDs fit in the payload.
pub fn long_header_version(payload: &[u8]) -> Option<u32> {
    long_packet(payload)?.version()
}

/// The first QUIC long-header packet of a UDP payload (a client's Initial comes first in its
/// datagram).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LongPacket {
    /// An Initial packet of this known version.
    Initial(u32),
    /// Another packet type (0-RTT, Handshake, Retry) of this known version.
    Other(u32),
    /// The fixed bit is set but the version is not one pcaplab can read (version
    /// negotiation's 0 excepted, which is not a QUIC packet of any version).
    UnknownVersion,
}

impl LongPacket {
    /// The version, when pcaplab knows it.
    pub fn version(self) -> Option<u32> {
        match self {
            LongPacket::Initial(v) | LongPacket::Other(v) => Some(v),
            LongPacket::UnknownVersion => None,
        }
    }
}

/// What the UDP payload's first long-header packet is, if it starts with one (a first byte
/// with the long-header bit, connection IDs of at most 20 bytes within the payload).
pub fn long_packet(payload: &[u8]) -> Option<LongPacket> {
    let h = LongHeader::parse(payload)?;
    match version(h.version) {
        Some(v) if (h.first >> 4) & 3 == v.initial_type => Some(LongPacket::Initial(v.number)),
        Some(v) => Some(LongPacket::Other(v.number)),
        None if h.version != 0 && h.first & 0x40 != 0 => Some(LongPacket::UnknownVersion),
        None => None,
    }
}

/// The invariant part of a long header (RFC 8999 §5.1) and the type-specific fields up to the
/// packet number.
#[derive(Debug)]
struct LongHeader<'a> {
    first: u8,
    version: u32,
    dcid: &'a [u8],
    /// Offset of the byte after the Source Connection ID.
    after_scid: usize,
}

impl<'a> LongHeader<'a> {
    fn parse(p: &'a [u8]) -> Option<Self> {
        let first = *p.first()?;
        if first & 0x80 == 0 {
            return None;
        }
        let version = u32::from_be_bytes(p.get(1..5)?.try_into().ok()?);
        let dcid_len = usize::from(*p.get(5)?);
        // Versions 1 and 2 (and the drafts) limit connection IDs to 20 bytes.
        if dcid_len > 20 {
            return None;
        }
        let dcid = p.get(6..6 + dcid_len)?;
        let scid_len = usize::from(*p.get(6 + dcid_len)?);
        if scid_len > 20 {
            return None;
        }
        let after_scid = 7 + dcid_len + scid_len;
        if p.len() < after_scid {
            return None;
        }
        Some(LongHeader {
            first,
            version,
            dcid,
            after_scid,
        })
    }
}

/// A QUIC variable-length integer (RFC 9000 §16) at `*at`, which moves past it.
fn varint(p: &[u8], at: &mut usize) -> Option<u64> {
    let first = *p.get(*at)?;
    let len = 1usize << (first >> 6);
    let bytes = p.get(*at..*at + len)?;
    let mut v = u64::from(first & 0x3f);
    for b in &bytes[1..] {
        v = v << 8 | u64::from(*b);
    }
    *at += len;
    Some(v)
}

/// HKDF-Expand-Label's output length (aws-lc-rs's `KeyType`).
struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label(secret, label, "", N) of TLS 1.3 (RFC 8446 §7.1), into `out`.
fn expand_label(prk: &Prk, label: &[u8], out: &mut [u8]) -> Option<()> {
    let len = u16::try_from(out.len()).ok()?.to_be_bytes();
    let label_len = [u8::try_from(6 + label.len()).ok()?];
    let info: [&[u8]; 5] = [&len, &label_len, b"tls13 ", label, &[0]];
    prk.expand(&info, Len(out.len())).ok()?.fill(out).ok()
}

/// The client's Initial secret and the keys derived from it (RFC 9001 §5.2, Appendix A.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyMaterial {
    pub client_initial_secret: [u8; 32],
    pub key: [u8; 16],
    pub iv: [u8; 12],
    pub hp: [u8; 16],
}

impl KeyMaterial {
    /// The client Initial keys of `version` for the Destination Connection ID `dcid`.
    pub fn client_initial(version: &Version, dcid: &[u8]) -> Option<Self> {
        let initial = Salt::new(HKDF_SHA256, version.salt).extract(dcid);
        let mut m = KeyMaterial {
            client_initial_secret: [0; 32],
            key: [0; 16],
            iv: [0; 12],
            hp: [0; 16],
        };
        expand_label(&initial, b"client in", &mut m.client_initial_secret)?;
        let secret = Prk::new_less_safe(HKDF_SHA256, &m.client_initial_secret);
        let [key, iv, hp] = version.labels;
        expand_label(&secret, key, &mut m.key)?;
        expand_label(&secret, iv, &mut m.iv)?;
        expand_label(&secret, hp, &mut m.hp)?;
        Some(m)
    }
}

/// Ready-to-use client Initial keys of one version and Destination Connection ID.
struct Keys {
    version: u32,
    dcid: Vec<u8>,
    aead: LessSafeKey,
    iv: [u8; 12],
    hp: HeaderProtectionKey,
}

impl Keys {
    fn new(version: &Version, dcid: &[u8]) -> Option<Self> {
        let m = KeyMaterial::client_initial(version, dcid)?;
        Some(Keys {
            version: version.number,
            dcid: dcid.to_vec(),
            aead: LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &m.key).ok()?),
            iv: m.iv,
            hp: HeaderProtectionKey::new(&AES_128, &m.hp).ok()?,
        })
    }
}

/// Remove the header protection of the Initial packet `packet` (whose packet number starts at
/// `pn_at`) with `keys` and open its payload into `s`.
fn open_with(keys: &Keys, packet: &[u8], pn_at: usize, s: &mut Vec<u8>) -> Option<()> {
    // The sample starts 4 bytes after the packet number's start, whatever its length.
    let sample = packet.get(pn_at + 4..pn_at + 20)?;
    let mask = keys.hp.new_mask(sample).ok()?;
    let first = packet[0] ^ (mask[0] & 0x0f);
    let pn_len = usize::from(first & 3) + 1;
    let header_len = pn_at + pn_len;
    s.clear();
    s.extend_from_slice(packet);
    s[0] = first;
    let mut nonce = keys.iv;
    for i in 0..pn_len {
        let b = s[pn_at + i] ^ mask[1 + i];
        s[pn_at + i] = b;
        // The packet number as sent (its leading bytes, not sent, are taken as zero: the
        // first packets of a connection have small numbers).
        nonce[12 - pn_len + i] ^= b;
    }
    let (header, payload) = s.split_at_mut(header_len);
    let plain = keys
        .aead
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&*header),
            payload,
        )
        .ok()?
        .len();
    s.truncate(header_len + plain);
    s.drain(..header_len);
    Some(())
}

/// Counts of client Initial packets, for the summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InitialStats {
    /// Initial packets decrypted.
    pub decrypted: u64,
    /// Initial packets that could not be decrypted (authentication failed — wrong keys, or a
    /// server's Initial taken for a client's —, cut short, malformed), and long-header packets
    /// to or from UDP port 443 of a version pcaplab cannot read.
    pub undecryptable: u64,
}

/// The client's side of one QUIC connection as its Initial packets show it: the keys of its
/// Destination Connection ID and the CRYPTO stream, reassembled by offset up to
/// [`MAX_CRYPTO`] bytes.
#[derive(Default)]
pub struct Connection {
    keys: Option<Keys>,
    /// The CRYPTO stream's bytes from offset 0 (gaps hold zeros until filled).
    crypto: Vec<u8>,
    /// The byte ranges of `crypto` received, sorted and disjoint.
    filled: Vec<(usize, usize)>,
    /// Plaintext scratch space.
    scratch: Vec<u8>,
}

impl Connection {
    /// Decrypt the Initial packets of one UDP datagram sent by the client (packets of other
    /// types coalesced with them are skipped) and add their CRYPTO frames to the stream.
    /// Returns the version of the first Initial packet that decrypted, if any.
    pub fn add_datagram(&mut self, datagram: &[u8], stats: &mut InitialStats) -> Option<u32> {
        let mut decrypted = None;
        let mut rest = datagram;
        while let Some(h) = LongHeader::parse(rest) {
            let Some(v) = version(h.version) else {
                break;
            };
            let kind = (h.first >> 4) & 3;
            if kind == v.retry_type {
                break;
            }
            let mut at = h.after_scid;
            if kind == v.initial_type {
                let Some(token_len) = varint(rest, &mut at) else {
                    stats.undecryptable += 1;
                    break;
                };
                at = at.saturating_add(usize::try_from(token_len).unwrap_or(usize::MAX));
            }
            let Some(len) = varint(rest, &mut at) else {
                if kind == v.initial_type {
                    stats.undecryptable += 1;
                }
                break;
            };
            let end = usize::try_from(len)
                .ok()
                .and_then(|l| at.checked_add(l))
                .filter(|e| *e <= rest.len());
            let Some(end) = end else {
                // Cut short (snap length, a truncated datagram) or malformed.
                if kind == v.initial_type {
                    stats.undecryptable += 1;
                }
                break;
            };
            if kind == v.initial_type {
                match self.open(&v, h.dcid, &rest[..end], at) {
                    Some(()) => {
                        stats.decrypted += 1;
                        decrypted = decrypted.or(Some(v.number));
                        let plaintext = std::mem::take(&mut self.scratch);
                        self.crypto_frames(&plaintext);
                        self.scratch = plaintext;
                    }
                    None => stats.undecryptable += 1,
                }
            }
            rest = &rest[end..];
        }
        decrypted
    }

    /// Open the Initial packet `packet` (whose packet number starts at `pn_at`) into
    /// `self.scratch`. The keys derive from the Destination Connection ID of the client's
    /// first Initial (RFC 9001 §5.2), which later Initials no longer carry once the client
    /// switched to the server's connection ID: the keys of the first packet that opened are
    /// tried first, then those of this packet's connection ID (a new first Initial, after a
    /// Retry), which replace them if they open it.
    fn open(&mut self, v: &Version, dcid: &[u8], packet: &[u8], pn_at: usize) -> Option<()> {
        if let Some(keys) = self.keys.as_ref().filter(|k| k.version == v.number) {
            if open_with(keys, packet, pn_at, &mut self.scratch).is_some() {
                return Some(());
            }
            if keys.dcid == dcid {
                return None;
            }
        }
        let keys = Keys::new(v, dcid)?;
        open_with(&keys, packet, pn_at, &mut self.scratch)?;
        self.keys = Some(keys);
        Some(())
    }

    /// Walk a decrypted payload's frames, keeping the CRYPTO frames' data; stop at a frame
    /// type an Initial packet of a client does not carry before its ClientHello (or cannot
    /// carry at all).
    fn crypto_frames(&mut self, p: &[u8]) {
        let mut at = 0;
        while at < p.len() {
            let Some(kind) = varint(p, &mut at) else {
                return;
            };
            match kind {
                // PADDING, PING
                0x00 | 0x01 => {}
                // ACK, ACK with ECN counts
                0x02 | 0x03 => {
                    let ok = (|| {
                        varint(p, &mut at)?; // largest acknowledged
                        varint(p, &mut at)?; // delay
                        let ranges = varint(p, &mut at)?;
                        varint(p, &mut at)?; // first range
                        for _ in 0..ranges {
                            varint(p, &mut at)?; // gap
                            varint(p, &mut at)?; // range length
                        }
                        if kind == 0x03 {
                            for _ in 0..3 {
                                varint(p, &mut at)?;
                            }
                        }
                        Some(())
                    })();
                    if ok.is_none() {
                        return;
                    }
                }
                // CRYPTO
                0x06 => {
                    let (Some(offset), Some(len)) = (varint(p, &mut at), varint(p, &mut at)) else {
                        return;
                    };
                    let end = usize::try_from(len).ok().and_then(|l| at.checked_add(l));
                    let Some(data) = end.and_then(|e| p.get(at..e)) else {
                        return;
                    };
                    at += data.len();
                    if let Ok(offset) = usize::try_from(offset) {
                        self.add_crypto(offset, data);
                    }
                }
                _ => return,
            }
        }
    }

    /// Add CRYPTO stream bytes at `offset` (what lies past [`MAX_CRYPTO`] is dropped).
    fn add_crypto(&mut self, offset: usize, data: &[u8]) {
        if offset >= MAX_CRYPTO {
            return;
        }
        let data = &data[..data.len().min(MAX_CRYPTO - offset)];
        if data.is_empty() {
            return;
        }
        let end = offset + data.len();
        if self.crypto.len() < end {
            self.crypto.resize(end, 0);
        }
        self.crypto[offset..end].copy_from_slice(data);
        // Merge the range into the sorted, disjoint list.
        let (mut start, mut stop) = (offset, end);
        self.filled.retain(|&(s, e)| {
            if e < start || s > stop {
                true
            } else {
                start = start.min(s);
                stop = stop.max(e);
                false
            }
        });
        let at = self.filled.partition_point(|&(s, _)| s < start);
        self.filled.insert(at, (start, stop));
    }

    /// The stream's bytes received without a gap from offset 0.
    fn contiguous(&self) -> &[u8] {
        match self.filled.first() {
            Some(&(0, end)) => &self.crypto[..end],
            _ => &[],
        }
    }

    /// CRYPTO stream bytes received so far (for the caller's memory accounting).
    pub fn buffered(&self) -> usize {
        self.crypto.len()
    }

    /// The ClientHello at the start of the CRYPTO stream, as far as it was received: its
    /// fields in `out` (cleared first; `quic_version` set when anything was found).
    /// [`Parsed::Complete`] once the whole message is there, [`Parsed::Partial`] while it is
    /// not (`out` then holds what its first part gave, as for a ClientHello cut over TCP
    /// segments), [`Parsed::Nothing`] when the stream does not start with a ClientHello.
    pub fn client_hello(&self, version: u32, out: &mut AppFields) -> Parsed {
        out.clear();
        let bytes = self.contiguous();
        let parsed = match bytes {
            [] => Parsed::Partial,
            [1, ..] => {
                let len = match bytes.get(1..4) {
                    Some(&[a, b, c]) => usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c),
                    _ => usize::MAX,
                };
                let whole = len.checked_add(4).filter(|l| *l <= bytes.len());
                let message = &bytes[..whole.unwrap_or(bytes.len())];
                // The TLS-over-TCP code reads a TLS record: give it one around the message,
                // announcing the whole message's length (so that a part reads as a record cut
                // short). A record holds at most 2^14 bytes; a longer ClientHello is read as
                // one whose record was cut there (its SNI, no JA3).
                let announced = len.saturating_add(4).min(1 << 14);
                let mut record = Vec::with_capacity(5 + message.len().min(announced));
                record.extend_from_slice(&[0x16, 3, 1]);
                record
                    .extend_from_slice(&u16::try_from(announced).unwrap_or(1 << 14).to_be_bytes());
                record.extend_from_slice(&message[..message.len().min(announced)]);
                out.clear();
                match tls_client_hello(&record, true, out) {
                    Parsed::Complete if out.is_empty() => Parsed::Nothing,
                    Parsed::Partial if whole.is_some() => Parsed::Complete,
                    p => p,
                }
            }
            _ => Parsed::Nothing,
        };
        if !out.is_empty() {
            out.quic_version = Some(version);
        }
        parsed
    }
}

/// A client Initial packet of `number` for `dcid` with packet number `pn` carrying `frames`
/// (padded to the 20 bytes header protection samples), protected as a client would: for the
/// tests and the fuzz target of the code that follows connections. An unknown version is
/// taken as version 1; `frames` are cut to 16,320 bytes (a 2-byte Length field).
pub(crate) fn seal_initial(number: u32, dcid: &[u8], pn: u8, frames: &[u8]) -> Vec<u8> {
    seal_initial_keyed(number, dcid, dcid, pn, frames)
}

/// [`seal_initial`] with the keys of `key_dcid` in a packet whose header carries `dcid` (as a
/// client's Initials do once it switched to the server's connection ID).
fn seal_initial_keyed(number: u32, key_dcid: &[u8], dcid: &[u8], pn: u8, frames: &[u8]) -> Vec<u8> {
    let v = version(number).unwrap_or(Version {
        number,
        ..V1_TEMPLATE
    });
    let dcid = &dcid[..dcid.len().min(20)];
    let Some(m) = KeyMaterial::client_initial(&v, key_dcid) else {
        return Vec::new();
    };
    let frames = &frames[..frames.len().min(16_320)];
    let mut payload = frames.to_vec();
    if payload.len() < 20 {
        payload.resize(20, 0);
    }
    let mut packet = vec![0xc0 | v.initial_type << 4];
    packet.extend_from_slice(&number.to_be_bytes());
    packet.push(dcid.len() as u8);
    packet.extend_from_slice(dcid);
    packet.extend_from_slice(&[0, 0]); // no source connection ID, no token
    let len = (1 + payload.len() + 16) as u16;
    packet.extend_from_slice(&(0x4000 | len).to_be_bytes());
    let pn_at = packet.len();
    packet.push(pn);
    let mut nonce = m.iv;
    nonce[11] ^= pn;
    let sealed = UnboundKey::new(&AES_128_GCM, &m.key)
        .map(LessSafeKey::new)
        .and_then(|key| {
            key.seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&packet[..]),
                &mut payload,
            )
        });
    if sealed.is_err() {
        return Vec::new();
    }
    packet.extend_from_slice(&payload);
    let mask = HeaderProtectionKey::new(&AES_128, &m.hp)
        .and_then(|hp| hp.new_mask(&packet[pn_at + 4..pn_at + 20]));
    let Ok(mask) = mask else {
        return Vec::new();
    };
    packet[0] ^= mask[0] & 0x0f;
    packet[pn_at] ^= mask[1];
    packet
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{IPPROTO_TCP, parse_app};

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    const DCID: &str = "8394c8f03e515708";

    /// RFC 9001 Appendix A.2 (and RFC 9369 Appendix A.2): the client Initial's frames, a
    /// CRYPTO frame with a ClientHello for example.com, then PADDING to 1162 bytes.
    const CLIENT_FRAMES: &str = "
        060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868
        04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578
        616d706c652e636f6dff01000100000a00080006001d00170018001000070005
        04616c706e000500050100000000003300260024001d00209370b2c9caa47fba
        baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400
        0d0010000e0403050306030203080408050806002d00020101001c0002400100
        3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000
        75300901100f088394c8f03e51570806048000ffff";

    /// RFC 9001 Appendix A.2: the protected client Initial packet (a 1200-byte datagram).
    const RFC9001_CLIENT_INITIAL: &str = "
        c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11
        d242b123dc9bd8bab936b47d92ec356c0bab7df5976d27cd449f63300099f399
        1c260ec4c60d17b31f8429157bb35a1282a643a8d2262cad67500cadb8e7378c
        8eb7539ec4d4905fed1bee1fc8aafba17c750e2c7ace01e6005f80fcb7df6212
        30c83711b39343fa028cea7f7fb5ff89eac2308249a02252155e2347b63d58c5
        457afd84d05dfffdb20392844ae812154682e9cf012f9021a6f0be17ddd0c208
        4dce25ff9b06cde535d0f920a2db1bf362c23e596d11a4f5a6cf3948838a3aec
        4e15daf8500a6ef69ec4e3feb6b1d98e610ac8b7ec3faf6ad760b7bad1db4ba3
        485e8a94dc250ae3fdb41ed15fb6a8e5eba0fc3dd60bc8e30c5c4287e53805db
        059ae0648db2f64264ed5e39be2e20d82df566da8dd5998ccabdae053060ae6c
        7b4378e846d29f37ed7b4ea9ec5d82e7961b7f25a9323851f681d582363aa5f8
        9937f5a67258bf63ad6f1a0b1d96dbd4faddfcefc5266ba6611722395c906556
        be52afe3f565636ad1b17d508b73d8743eeb524be22b3dcbc2c7468d54119c74
        68449a13d8e3b95811a198f3491de3e7fe942b330407abf82a4ed7c1b311663a
        c69890f4157015853d91e923037c227a33cdd5ec281ca3f79c44546b9d90ca00
        f064c99e3dd97911d39fe9c5d0b23a229a234cb36186c4819e8b9c5927726632
        291d6a418211cc2962e20fe47feb3edf330f2c603a9d48c0fcb5699dbfe58964
        25c5bac4aee82e57a85aaf4e2513e4f05796b07ba2ee47d80506f8d2c25e50fd
        14de71e6c418559302f939b0e1abd576f279c4b2e0feb85c1f28ff18f58891ff
        ef132eef2fa09346aee33c28eb130ff28f5b766953334113211996d20011a198
        e3fc433f9f2541010ae17c1bf202580f6047472fb36857fe843b19f5984009dd
        c324044e847a4f4a0ab34f719595de37252d6235365e9b84392b061085349d73
        203a4a13e96f5432ec0fd4a1ee65accdd5e3904df54c1da510b0ff20dcc0c77f
        cb2c0e0eb605cb0504db87632cf3d8b4dae6e705769d1de354270123cb11450e
        fc60ac47683d7b8d0f811365565fd98c4c8eb936bcab8d069fc33bd801b03ade
        a2e1fbc5aa463d08ca19896d2bf59a071b851e6c239052172f296bfb5e724047
        90a2181014f3b94a4e97d117b438130368cc39dbb2d198065ae3986547926cd2
        162f40a29f0c3c8745c0f50fba3852e566d44575c29d39a03f0cda721984b6f4
        40591f355e12d439ff150aab7613499dbd49adabc8676eef023b15b65bfc5ca0
        6948109f23f350db82123535eb8a7433bdabcb909271a6ecbcb58b936a88cd4e
        8f2e6ff5800175f113253d8fa9ca8885c2f552e657dc603f252e1a8e308f76f0
        be79e2fb8f5d5fbbe2e30ecadd220723c8c0aea8078cdfcb3868263ff8f09400
        54da48781893a7e49ad5aff4af300cd804a6b6279ab3ff3afb64491c85194aab
        760d58a606654f9f4400e8b38591356fbf6425aca26dc85244259ff2b19c41b9
        f96f3ca9ec1dde434da7d2d392b905ddf3d1f9af93d1af5950bd493f5aa731b4
        056df31bd267b6b90a079831aaf579be0a39013137aac6d404f518cfd4684064
        7e78bfe706ca4cf5e9c5453e9f7cfd2b8b4c8d169a44e55c88d4a9a7f9474241
        e221af44860018ab0856972e194cd934";

    /// RFC 9369 Appendix A.2: the same packet in version 2.
    const RFC9369_CLIENT_INITIAL: &str = "
        d76b3343cf088394c8f03e5157080000449ea0c95e82ffe67b6abcdb4298b485
        dd04de806071bf03dceebfa162e75d6c96058bdbfb127cdfcbf903388e99ad04
        9f9a3dd4425ae4d0992cfff18ecf0fdb5a842d09747052f17ac2053d21f57c5d
        250f2c4f0e0202b70785b7946e992e58a59ac52dea6774d4f03b55545243cf1a
        12834e3f249a78d395e0d18f4d766004f1a2674802a747eaa901c3f10cda5500
        cb9122faa9f1df66c392079a1b40f0de1c6054196a11cbea40afb6ef5253cd68
        18f6625efce3b6def6ba7e4b37a40f7732e093daa7d52190935b8da58976ff33
        12ae50b187c1433c0f028edcc4c2838b6a9bfc226ca4b4530e7a4ccee1bfa2a3
        d396ae5a3fb512384b2fdd851f784a65e03f2c4fbe11a53c7777c023462239dd
        6f7521a3f6c7d5dd3ec9b3f233773d4b46d23cc375eb198c63301c21801f6520
        bcfb7966fc49b393f0061d974a2706df8c4a9449f11d7f3d2dcbb90c6b877045
        636e7c0c0fe4eb0f697545460c806910d2c355f1d253bc9d2452aaa549e27a1f
        ac7cf4ed77f322e8fa894b6a83810a34b361901751a6f5eb65a0326e07de7c12
        16ccce2d0193f958bb3850a833f7ae432b65bc5a53975c155aa4bcb4f7b2c4e5
        4df16efaf6ddea94e2c50b4cd1dfe06017e0e9d02900cffe1935e0491d77ffb4
        fdf85290fdd893d577b1131a610ef6a5c32b2ee0293617a37cbb08b847741c3b
        8017c25ca9052ca1079d8b78aebd47876d330a30f6a8c6d61dd1ab5589329de7
        14d19d61370f8149748c72f132f0fc99f34d766c6938597040d8f9e2bb522ff9
        9c63a344d6a2ae8aa8e51b7b90a4a806105fcbca31506c446151adfeceb51b91
        abfe43960977c87471cf9ad4074d30e10d6a7f03c63bd5d4317f68ff325ba3bd
        80bf4dc8b52a0ba031758022eb025cdd770b44d6d6cf0670f4e990b22347a7db
        848265e3e5eb72dfe8299ad7481a408322cac55786e52f633b2fb6b614eaed18
        d703dd84045a274ae8bfa73379661388d6991fe39b0d93debb41700b41f90a15
        c4d526250235ddcd6776fc77bc97e7a417ebcb31600d01e57f32162a8560cacc
        7e27a096d37a1a86952ec71bd89a3e9a30a2a26162984d7740f81193e8238e61
        f6b5b984d4d3dfa033c1bb7e4f0037febf406d91c0dccf32acf423cfa1e70710
        10d3f270121b493ce85054ef58bada42310138fe081adb04e2bd901f2f13458b
        3d6758158197107c14ebb193230cd1157380aa79cae1374a7c1e5bbcb80ee23e
        06ebfde206bfb0fcbc0edc4ebec309661bdd908d532eb0c6adc38b7ca7331dce
        8dfce39ab71e7c32d318d136b6100671a1ae6a6600e3899f31f0eed19e3417d1
        34b90c9058f8632c798d4490da4987307cba922d61c39805d072b589bd52fdf1
        e86215c2d54e6670e07383a27bbffb5addf47d66aa85a0c6f9f32e59d85a44dd
        5d3b22dc2be80919b490437ae4f36a0ae55edf1d0b5cb4e9a3ecabee93dfc6e3
        8d209d0fa6536d27a5d6fbb17641cde27525d61093f1b28072d111b2b4ae5f89
        d5974ee12e5cf7d5da4d6a31123041f33e61407e76cffcdcfd7e19ba58cf4b53
        6f4c4938ae79324dc402894b44faf8afbab35282ab659d13c93f70412e85cb19
        9a37ddec600545473cfb5a05e08d0b209973b2172b4d21fb69745a262ccde96b
        a18b2faa745b6fe189cf772a9f84cbfc";

    fn keys(number: u32) -> KeyMaterial {
        let v = version(number).expect("known version");
        KeyMaterial::client_initial(&v, &hex(DCID)).expect("keys")
    }

    #[test]
    fn rfc9001_client_initial_keys() {
        // RFC 9001 Appendix A.1.
        let k = keys(VERSION_1);
        assert_eq!(
            k.client_initial_secret.to_vec(),
            hex("c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea")
        );
        assert_eq!(k.key.to_vec(), hex("1f369613dd76d5467730efcbe3b1a22d"));
        assert_eq!(k.iv.to_vec(), hex("fa044b2f42a3fd3b46fb255c"));
        assert_eq!(k.hp.to_vec(), hex("9f50449e04a0e810283a1e9933adedd2"));
    }

    #[test]
    fn rfc9369_client_initial_keys() {
        // RFC 9369 Appendix A.1.
        let k = keys(VERSION_2);
        assert_eq!(
            k.client_initial_secret.to_vec(),
            hex("14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b")
        );
        assert_eq!(k.key.to_vec(), hex("8b1a0bc121284290a29e0971b5cd045d"));
        assert_eq!(k.iv.to_vec(), hex("91f73e2351d8fa91660e909f"));
        assert_eq!(k.hp.to_vec(), hex("45b95e15235d6f45a6b19cbcb0294ba9"));
    }

    #[test]
    fn header_protection_masks() {
        // RFC 9001 A.2 and RFC 9369 A.2: the sample and the mask it gives.
        for (number, sample, mask) in [
            (VERSION_1, "d1b1c98dd7689fb8ec11d242b123dc9b", "437b9aec36"),
            (VERSION_2, "ffe67b6abcdb4298b485dd04de806071", "94a0c95e80"),
        ] {
            let k = keys(number);
            let hp = HeaderProtectionKey::new(&AES_128, &k.hp).expect("hp key");
            assert_eq!(hp.new_mask(&hex(sample)).expect("mask").to_vec(), hex(mask));
        }
    }

    /// Decrypt the RFC's packet: the plaintext must be exactly the frames, then PADDING.
    fn decrypts_to_the_rfc_frames(number: u32, packet: &str) {
        let packet = hex(packet);
        assert_eq!(packet.len(), 1200);
        let v = version(number).expect("version");
        let h = LongHeader::parse(&packet).expect("long header");
        assert_eq!(h.version, number);
        assert_eq!(h.dcid, hex(DCID));
        let mut c = Connection::default();
        // Header: 18 bytes up to the packet number (token length 0, Length 0x449e).
        c.open(&v, h.dcid, &packet, 18).expect("decrypts");
        let mut frames = hex(CLIENT_FRAMES);
        frames.resize(1162, 0);
        assert_eq!(c.scratch, frames);
        // Through the datagram walk.
        let mut again = Connection::default();
        let mut stats = InitialStats::default();
        assert_eq!(again.add_datagram(&packet, &mut stats), Some(number));
        assert_eq!(
            stats,
            InitialStats {
                decrypted: 1,
                undecryptable: 0
            }
        );
        // The CRYPTO frame: the ClientHello (0xf1 bytes at offset 0).
        assert_eq!(again.contiguous(), &hex(CLIENT_FRAMES)[4..4 + 0xf1]);
        let mut out = AppFields::default();
        assert_eq!(again.client_hello(number, &mut out), Parsed::Complete);
        assert_eq!(out.tls_sni.as_deref(), Some("example.com"));
        assert!(out.tls_ja3.is_some());
        assert_eq!(out.quic_version, Some(number));
        assert_eq!(long_header_version(&packet), Some(number));
    }

    #[test]
    fn rfc9001_client_initial_decrypts() {
        decrypts_to_the_rfc_frames(VERSION_1, RFC9001_CLIENT_INITIAL);
    }

    #[test]
    fn rfc9369_client_initial_decrypts() {
        decrypts_to_the_rfc_frames(VERSION_2, RFC9369_CLIENT_INITIAL);
    }

    #[test]
    fn unprotected_header_is_the_rfcs() {
        // RFC 9001 A.2: the unprotected header is c300000001088394c8f03e5157080000449e00000002.
        let packet = hex(RFC9001_CLIENT_INITIAL);
        let k = keys(VERSION_1);
        let hp = HeaderProtectionKey::new(&AES_128, &k.hp).expect("hp key");
        let mask = hp.new_mask(&packet[22..38]).expect("mask");
        let mut header = packet[..22].to_vec();
        header[0] ^= mask[0] & 0x0f;
        for i in 0..4 {
            header[18 + i] ^= mask[1 + i];
        }
        assert_eq!(header, hex("c300000001088394c8f03e5157080000449e00000002"));
    }

    #[test]
    fn tampered_or_cut_packets_are_counted_not_read() {
        let packet = hex(RFC9001_CLIENT_INITIAL);
        // One flipped ciphertext bit: authentication fails.
        let mut bad = packet.clone();
        bad[600] ^= 1;
        let mut c = Connection::default();
        let mut stats = InitialStats::default();
        assert_eq!(c.add_datagram(&bad, &mut stats), None);
        assert_eq!(stats.undecryptable, 1);
        assert!(c.contiguous().is_empty());
        // Another connection ID: other keys.
        let mut other = packet.clone();
        other[6] ^= 0xff;
        assert_eq!(c.add_datagram(&other, &mut stats), None);
        // Cut short (snap length).
        assert_eq!(c.add_datagram(&packet[..1000], &mut stats), None);
        assert_eq!(stats.undecryptable, 3);
        assert_eq!(stats.decrypted, 0);
        // Every cut and a few byte flips: never a panic.
        for cut in 0..packet.len() {
            let _ = Connection::default().add_datagram(&packet[..cut], &mut stats);
            let _ = long_header_version(&packet[..cut]);
        }
        for at in 0..64 {
            let mut m = packet.clone();
            m[at] ^= 0x55;
            let mut c = Connection::default();
            let _ = c.add_datagram(&m, &mut stats);
            let _ = c.client_hello(VERSION_1, &mut AppFields::default());
        }
    }

    #[test]
    fn coalesced_packets_are_walked_by_length() {
        // A Handshake packet (type 2) before the Initial is skipped by its Length; a trailing
        // short-header packet ends the walk.
        let initial = hex(RFC9001_CLIENT_INITIAL);
        let mut d = vec![0xe0, 0, 0, 0, 1, 0, 0, 0x05, 1, 2, 3, 4, 5];
        d.extend_from_slice(&initial);
        d.extend_from_slice(&[0x40, 1, 2, 3]);
        let mut c = Connection::default();
        let mut stats = InitialStats::default();
        assert_eq!(c.add_datagram(&d, &mut stats), Some(VERSION_1));
        assert_eq!(stats.decrypted, 1);
        let mut out = AppFields::default();
        assert_eq!(c.client_hello(VERSION_1, &mut out), Parsed::Complete);
        assert_eq!(out.tls_sni.as_deref(), Some("example.com"));
    }

    #[test]
    fn crypto_stream_reassembled_out_of_order() {
        let frames = hex(CLIENT_FRAMES);
        let hello = &frames[4..4 + 0xf1];
        let mut c = Connection::default();
        let mut out = AppFields::default();
        // The second half first, then a piece of the first, then the rest.
        c.add_crypto(100, &hello[100..]);
        assert_eq!(c.client_hello(VERSION_1, &mut out), Parsed::Partial);
        assert!(out.is_empty());
        c.add_crypto(0, &hello[..40]);
        assert_eq!(c.client_hello(VERSION_1, &mut out), Parsed::Partial);
        // The SNI (at byte 73 and on) is not there yet.
        assert_eq!(out.tls_sni, None);
        c.add_crypto(30, &hello[30..100]);
        assert_eq!(c.filled, vec![(0, hello.len())]);
        assert_eq!(c.client_hello(VERSION_1, &mut out), Parsed::Complete);
        assert_eq!(out.tls_sni.as_deref(), Some("example.com"));
        assert_eq!(out.quic_version, Some(VERSION_1));
        // Same fields as the ClientHello read in one piece over TCP.
        let mut record = vec![0x16, 3, 1, 0, 0xf1];
        record.extend_from_slice(hello);
        let mut tcp = AppFields::default();
        assert_eq!(
            parse_app(IPPROTO_TCP, 1, 443, &record, &mut tcp),
            Parsed::Complete
        );
        assert_eq!(tcp.tls_ja3, out.tls_ja3);
        // Not a ClientHello (a ServerHello): nothing.
        let mut s = Connection::default();
        s.add_crypto(0, &[2, 0, 0, 4, 3, 3, 0, 0]);
        assert_eq!(s.client_hello(VERSION_1, &mut out), Parsed::Nothing);
        // Past the cap: dropped.
        s.add_crypto(MAX_CRYPTO - 1, &[1, 2, 3]);
        assert_eq!(s.buffered(), MAX_CRYPTO);
    }

    #[test]
    fn sealed_packets_open_in_every_version() {
        for number in [VERSION_1, VERSION_2, 0xff00_001d, 0xff00_0017, 0xff00_0022] {
            let frames = [0x06, 0x00, 0x03, 1, 0, 0];
            let d = seal_initial(number, &[9; 8], 0, &frames);
            assert_eq!(long_packet(&d), Some(LongPacket::Initial(number)));
            let mut c = Connection::default();
            let mut stats = InitialStats::default();
            assert_eq!(c.add_datagram(&d, &mut stats), Some(number));
            assert_eq!(c.contiguous(), &[1, 0, 0]);
        }
    }

    #[test]
    fn later_initials_keep_the_first_connection_ids_keys() {
        // The client's first Initial to connection ID A, then one to the server's connection ID
        // B, still protected with A's keys (RFC 9001 §5.2); then, as after a Retry, a first
        // Initial to C with C's keys.
        let (a, b, c) = ([0xa; 8], [0xb; 8], [0xc; 8]);
        let mut conn = Connection::default();
        let mut stats = InitialStats::default();
        let first = seal_initial(VERSION_1, &a, 0, &[0x06, 0, 2, 1, 0]);
        let second = seal_initial_keyed(VERSION_1, &a, &b, 1, &[0x06, 2, 2, 0, 9]);
        assert_eq!(conn.add_datagram(&first, &mut stats), Some(VERSION_1));
        assert_eq!(conn.add_datagram(&second, &mut stats), Some(VERSION_1));
        assert_eq!(conn.contiguous(), &[1, 0, 0, 9]);
        let retried = seal_initial(VERSION_1, &c, 0, &[0x06, 4, 1, 7]);
        assert_eq!(conn.add_datagram(&retried, &mut stats), Some(VERSION_1));
        assert_eq!(conn.contiguous(), &[1, 0, 0, 9, 7]);
        // B's own keys open nothing of this connection.
        let wrong = seal_initial_keyed(VERSION_1, &b, &a, 2, &[0x01]);
        assert_eq!(conn.add_datagram(&wrong, &mut stats), None);
        assert_eq!(
            stats,
            InitialStats {
                decrypted: 3,
                undecryptable: 1
            }
        );
    }

    #[test]
    fn versions() {
        assert_eq!(version(0xff00_001d).map(|v| v.salt), Some(&SALT_DRAFT_29));
        assert_eq!(version(0xff00_0022).map(|v| v.salt), Some(&SALT_V1));
        assert_eq!(version(0xff00_0017).map(|v| v.salt), Some(&SALT_DRAFT_23));
        assert!(version(0xff00_0016).is_none());
        assert!(version(0).is_none());
        assert!(version(0x5130_3530).is_none());
        // Short headers, version negotiation and unknown versions are not recognised.
        assert_eq!(long_header_version(&[0x40, 0, 0, 0, 1, 0, 0]), None);
        assert_eq!(long_header_version(&[0xc0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(long_header_version(&[0xc0, 0, 0, 0, 1, 0, 0]), Some(1));
        // A connection ID longer than 20 bytes is not version 1's.
        assert_eq!(long_header_version(&[0xc0, 0, 0, 0, 1, 21, 0]), None);
    }
}
