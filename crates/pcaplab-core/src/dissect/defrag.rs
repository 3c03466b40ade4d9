//! IP fragment reassembly across the whole capture, in file order.
//!
//! Chunks are decoded in parallel, but a datagram's fragments may fall into different chunks,
//! so reassembly runs where file order is: on the thread that frames the capture, before a
//! chunk is handed to a worker. A cheap look at each frame's first headers ([`may_hold_fragment`])
//! picks the frames that can hold a fragment (a fragmented IP header, an IPv6 extension
//! header, or a tunnel, which may carry one); only those are walked, and their fragments go
//! to the [`Reassembler`]. What it finds travels with the chunk as [`ChunkFrags`]: which
//! datagram each fragment belongs to, the datagrams completed (decoded by the worker in
//! place of the fragment that completed them) and the datagrams given up. The result is the
//! same whatever the chunk size or the number of workers.

use super::frag::{Added, Expired, FragConfig, FragStats, Fragment, Reassembler};
use super::link::{ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use super::{FragKey, Fragments, Packet, be16, dissect_with, is_tunnel_port, linktype};
use crate::reader::Chunk;

/// Where a fragment's datagram stands, for its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragNote {
    /// Frame number of the datagram's first fragment in file order: the datagram's identity.
    pub datagram: u64,
    /// Something suspicious about the datagram, noted on this frame's row.
    pub error: Option<&'static str>,
}

/// A datagram completed by a frame of the chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// The whole IP packet: the first fragment's header (lengths fixed, no more fragments)
    /// and the reassembled payload.
    pub bytes: Vec<u8>,
    /// Fragments that made it, the completing one included.
    pub fragments: u32,
    /// Wire bytes of those fragments' frames.
    pub wire_bytes: u64,
    pub first_frame: u64,
}

/// What reassembly found in one chunk, by frame index within the chunk (ascending).
#[derive(Debug, Default)]
pub struct ChunkFrags {
    /// Every frame that holds a fragment.
    pub notes: Vec<(u32, FragNote)>,
    /// Datagrams, by the frame that completed them.
    pub datagrams: Vec<(u32, Datagram)>,
    /// Incomplete datagrams given up just before this frame (the chunk's frame count: after
    /// its last frame, at the end of the capture).
    pub expired: Vec<(u32, Expired<FragKey>)>,
    /// Datagrams reassembled, timed out, evicted or invalid while this chunk was framed.
    pub stats: FragStats,
}

impl ChunkFrags {
    pub fn is_empty(&self) -> bool {
        self.notes.is_empty() && self.expired.is_empty()
    }

    /// Bytes held by the chunk's datagrams.
    pub fn bytes(&self) -> usize {
        self.datagrams.iter().map(|(_, d)| d.bytes.len()).sum()
    }
}

/// The reassembly of one capture.
pub struct Defragmenter {
    r: Reassembler<FragKey>,
    packet: Packet,
}

impl Defragmenter {
    pub fn new(cfg: FragConfig) -> Self {
        Defragmenter {
            r: Reassembler::new(cfg),
            packet: Packet::default(),
        }
    }

    /// Feed the chunk's frames (the capture's next ones) to the reassembly and record what it
    /// found in `chunk.frags`.
    pub fn scan(&mut self, chunk: &mut Chunk) {
        let before = self.r.stats();
        let mut found = std::mem::take(&mut chunk.frags);
        let mut candidates = chunk.maybe_fragments.iter().copied().peekable();
        for (i, f) in chunk.frames.iter().enumerate() {
            let i = i as u32;
            self.r.advance(f.ts_ns);
            if candidates.next_if_eq(&i).is_some() {
                let data = chunk.frame_data(f);
                let mut rec = Recorder {
                    r: &mut self.r,
                    frame: chunk.first_frame + u64::from(i),
                    ts: f.ts_ns,
                    wire_len: f.wire_len,
                    added: None,
                };
                dissect_with(f.link_type, data, &mut self.packet, Some(&mut rec));
                let added = rec.added.take();
                // Given up to make room for this fragment (or timed out by it): before it.
                for e in self.r.take_expired() {
                    found.expired.push((i, e));
                }
                match added {
                    None => {}
                    Some(Added::Pending { first_frame }) => found.notes.push((
                        i,
                        FragNote {
                            datagram: first_frame,
                            error: None,
                        },
                    )),
                    Some(Added::Complete(d)) => {
                        found.notes.push((
                            i,
                            FragNote {
                                datagram: d.first_frame,
                                error: d.overlap.then_some("overlapping IP fragments"),
                            },
                        ));
                        let mut bytes = d.header;
                        bytes.extend_from_slice(&d.payload);
                        fix_header(&mut bytes, d.payload.len());
                        found.datagrams.push((
                            i,
                            Datagram {
                                bytes,
                                fragments: d.fragments,
                                wire_bytes: d.wire_bytes,
                                first_frame: d.first_frame,
                            },
                        ));
                    }
                    Some(Added::Invalid {
                        first_frame,
                        reason,
                        expired,
                    }) => {
                        found.notes.push((
                            i,
                            FragNote {
                                datagram: first_frame,
                                error: Some(reason),
                            },
                        ));
                        found.expired.push((i, expired));
                    }
                }
            } else {
                for e in self.r.take_expired() {
                    found.expired.push((i, e));
                }
            }
        }
        add_stats(&mut found.stats, &self.r.stats(), &before);
        chunk.frags = found;
    }

    /// End of capture: the datagrams still incomplete are given up after the chunk's last
    /// frame (the capture's last chunk, which may hold no frames).
    pub fn finish(&mut self, chunk: &mut Chunk) {
        let before = self.r.stats();
        let end = chunk.frames.len() as u32;
        for e in self.r.finish() {
            chunk.frags.expired.push((end, e));
        }
        add_stats(&mut chunk.frags.stats, &self.r.stats(), &before);
    }
}

impl FragStats {
    pub fn add(&mut self, other: &FragStats) {
        self.reassembled += other.reassembled;
        self.timed_out += other.timed_out;
        self.evicted += other.evicted;
        self.invalid += other.invalid;
        self.incomplete += other.incomplete;
        self.overlaps += other.overlaps;
    }
}

fn add_stats(into: &mut FragStats, now: &FragStats, before: &FragStats) {
    into.reassembled += now.reassembled - before.reassembled;
    into.timed_out += now.timed_out - before.timed_out;
    into.evicted += now.evicted - before.evicted;
    into.invalid += now.invalid - before.invalid;
    into.incomplete += now.incomplete - before.incomplete;
    into.overlaps += now.overlaps - before.overlaps;
}

/// A whole datagram's header: the total (IPv4) or payload (IPv6) length of the datagram, no
/// more fragments, offset 0. Lengths past 65,535 cannot be written; the reassembly gives
/// such datagrams up before they get here.
fn fix_header(bytes: &mut [u8], payload: usize) {
    match bytes.first().map(|b| b >> 4) {
        Some(4) if bytes.len() >= 20 => {
            let total = u16::try_from(bytes.len()).unwrap_or(0);
            bytes[2..4].copy_from_slice(&total.to_be_bytes());
            bytes[6] &= 0x40; // keep DF, clear MF and the offset
            bytes[7] = 0;
        }
        Some(6) if bytes.len() >= 40 => {
            let len = u16::try_from(payload).unwrap_or(0);
            bytes[4..6].copy_from_slice(&len.to_be_bytes());
        }
        _ => {}
    }
}

/// Records the frame's fragment in the reassembly; nothing is decoded in its place here.
struct Recorder<'r> {
    r: &'r mut Reassembler<FragKey>,
    frame: u64,
    ts: i64,
    wire_len: u32,
    added: Option<Added<FragKey>>,
}

impl<'d> Fragments<'d> for Recorder<'_> {
    fn fragment(&mut self, key: &FragKey, frag: &Fragment<'_>) -> Option<&'d [u8]> {
        if self.added.is_none() {
            self.added = Some(self.r.add(*key, self.frame, self.ts, self.wire_len, *frag));
        }
        None
    }
}

/// Hands the chunk's reassembled datagrams to the worker's walk, frame by frame.
pub(crate) struct ChunkDatagrams<'c> {
    datagrams: &'c [(u32, Datagram)],
    next: usize,
    frame: u32,
}

impl<'c> ChunkDatagrams<'c> {
    pub(crate) fn new(frags: &'c ChunkFrags) -> Self {
        ChunkDatagrams {
            datagrams: &frags.datagrams,
            next: 0,
            frame: 0,
        }
    }

    /// Whether frame `i` (ascending calls) completes a datagram; if so it is handed out when
    /// the walk meets the fragment.
    pub(crate) fn at(&mut self, i: u32) -> Option<&'c Datagram> {
        self.frame = i;
        while self.datagrams.get(self.next).is_some_and(|(at, _)| *at < i) {
            self.next += 1;
        }
        self.datagrams
            .get(self.next)
            .filter(|(at, _)| *at == i)
            .map(|(_, d)| d)
    }
}

impl<'c> Fragments<'c> for ChunkDatagrams<'c> {
    fn fragment(&mut self, _key: &FragKey, _frag: &Fragment<'_>) -> Option<&'c [u8]> {
        self.datagrams
            .get(self.next)
            .filter(|(at, _)| *at == self.frame)
            .map(|(_, d)| d.bytes.as_slice())
    }
}

/// Whether a frame can hold an IP fragment: a quick look at its first headers. True for a
/// fragmented IP header, IPv6 extension headers, an IPv4 authentication header, tunnels
/// (IP-in-IP, GRE, a tunnel's UDP port), MPLS and PPPoE, and for every link type but the
/// common ones; false for plain unfragmented IP with TCP, UDP or ICMP, and for non-IP frames.
pub fn may_hold_fragment(link_type: u16, data: &[u8]) -> bool {
    let (mut ethertype, mut at) = match link_type {
        linktype::ETHERNET => match be16(data, 12) {
            Some(t) => (t, 14),
            None => return false,
        },
        linktype::RAW | linktype::IPV4 | linktype::IPV6 => {
            return ip_may_hold_fragment(data);
        }
        linktype::LINUX_SLL => match be16(data, 14) {
            Some(t) => (t, 16),
            None => return false,
        },
        linktype::LINUX_SLL2 => match be16(data, 0) {
            Some(t) => (t, 20),
            None => return false,
        },
        _ => return true,
    };
    // VLAN tags.
    while matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) {
        match be16(data, at + 2) {
            Some(t) => ethertype = t,
            None => return false,
        }
        at += 4;
    }
    match ethertype {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => data.get(at..).is_some_and(ip_may_hold_fragment),
        // MPLS, PPPoE session, Cisco MetaData: not looked into here.
        0x8847 | 0x8848 | 0x8864 | 0x8909 => true,
        // 802.3 length field: LLC/SNAP may carry IP.
        t if t < 0x0600 => true,
        _ => false,
    }
}

fn ip_may_hold_fragment(ip: &[u8]) -> bool {
    let Some(&first) = ip.first() else {
        return false;
    };
    let udp_tunnel = |udp: &[u8]| {
        be16(udp, 0).is_some_and(is_tunnel_port) || be16(udp, 2).is_some_and(is_tunnel_port)
    };
    match first >> 4 {
        4 => {
            let (Some(flags), Some(&proto)) = (be16(ip, 6), ip.get(9)) else {
                return false;
            };
            if flags & 0x3fff != 0 {
                return true;
            }
            match proto {
                // IP-in-IP, GRE; an authentication header, which may precede a tunnel's UDP
                // header (the `link` fuzz target checks this function against the walk).
                4 | 41 | 47 | 51 => true,
                17 => ip
                    .get(usize::from(first & 0x0f) * 4..)
                    .is_some_and(udp_tunnel),
                _ => false,
            }
        }
        6 => match ip.get(6) {
            // Hop-by-hop, routing, fragment, AH, destination options; IP-in-IP, GRE.
            Some(0 | 43 | 44 | 51 | 60 | 4 | 41 | 47) => true,
            Some(17) => ip.get(40..).is_some_and(udp_tunnel),
            _ => false,
        },
        _ => false,
    }
}

/// The packet a given-up datagram stands for in its flow: its first fragment's header and
/// transport header where they came (so the ports are known), else its addresses alone.
pub(crate) fn given_up_packet(e: &Expired<FragKey>, out: &mut Packet) {
    if e.header.is_empty() {
        *out = Packet::default();
        out.ip = Some(super::Ip {
            version: if matches!(e.key.src, super::Addr::V4(_)) {
                4
            } else {
                6
            },
            src: e.key.src,
            dst: e.key.dst,
            proto: e.key.proto,
            len: 0,
            ttl: 0,
            frag_offset: 0,
            more_fragments: true,
        });
    } else {
        let mut bytes = Vec::with_capacity(e.header.len() + e.head.len());
        bytes.extend_from_slice(&e.header);
        bytes.extend_from_slice(&e.head);
        fix_header(&mut bytes, e.head.len());
        super::dissect(linktype::RAW, &bytes, out);
        // The payload is not the packet's: nothing to follow.
        out.payload = None;
    }
    // The tunnel it came through keys its flow.
    let (encap, id) = e.key.tunnel;
    if encap != super::Encap::None {
        out.env.layers[0] = encap;
        out.env.depth = 1;
        out.env.tunnel_id = id;
        out.env.outer = None;
    }
}
