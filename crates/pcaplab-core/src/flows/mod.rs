//! Bidirectional flows, like Zeek's conn.log, from one pass over the decoded packets.
//!
//! A flow is keyed by IP protocol, outer and inner VLAN ID and the two endpoints (address and
//! port, or ICMP type and code paired as Community ID pairs them), in canonical order so that
//! both directions land on one key. The originator is the sender of the flow's first packet,
//! except that a flow whose first packet is a SYN-ACK is flipped (history `^`), as Zeek does.
//! A flow ends when it has been idle longer than its protocol's inactivity timeout (Zeek's
//! defaults: TCP 5 min, UDP and everything else 1 min); the next packet starts a new one. Idle
//! is measured in network time, as a tracker reading the capture packet by packet measures it:
//! from the latest timestamp in the capture at the flow's last packet to the latest at the
//! next. Where timestamps go backwards (copies of a capture appended one after another) an
//! earlier timestamp does not bring an idle flow back.
//!
//! Work is split like the rest of the pipeline. Each chunk of frames is folded, on a worker
//! thread, into [`ChunkFlows`]: per key one segment, or several where the chunk itself holds an
//! idle gap. The writer thread merges chunks in file order into a [`FlowTable`] of live flows
//! (sharded by key, the shards merged on every core) and retires the flows that can no longer
//! grow, so memory follows the number of live flows, not the capture's size — and the number of
//! live flows is bounded by a memory budget (see [`table`]). A segment continues a live flow
//! exactly when its first packet would have, packet by packet (each chunk knows the network
//! time before it, [`crate::reader::Chunk::time_before`]), so without eviction the flows do not
//! depend on how the capture was chunked, whatever order its timestamps are in (tested).
//!
//! `state` holds Zeek's TCP history and `conn_state`, `table` the live flows, `schema` the
//! flow table's columns.

pub mod parts;
mod schema;
mod state;
mod table;

use std::cell::Cell;

use base64::Engine as _;
use hashbrown::HashTable;
use sha1::{Digest, Sha1};

pub use schema::{col, flow_schema, flows_batch};
use state::{History, L_ACK, L_DATA, L_FIN, L_RST, L_SYN, L_SYNACK, TcpState, zeek_tcp_state};
pub use table::{Budget, FlowStats, FlowTable, InFileOrder, SHARDS, TOP_FLOWS};

use crate::app::Services;
use crate::dissect::{Addr, Encap, Envelope, Outer, Packet};
use crate::reader::NO_TIMESTAMP;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

const SECOND_NS: i64 = 1_000_000_000;

/// The live flows' memory budget unless set otherwise: 57,344 live flows (see [`Budget`]).
pub const DEFAULT_FLOW_MEMORY: usize = 16 << 20;

/// Flow settings: inactivity timeouts, the Community ID seed and the live flows' memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowConfig {
    pub tcp_timeout_ns: i64,
    pub udp_timeout_ns: i64,
    /// ICMP and every other IP protocol.
    pub other_timeout_ns: i64,
    pub community_id_seed: u16,
    /// Bytes the live flows of one capture may take; past it flows are evicted (written
    /// early, [`EndReason::Evicted`]).
    pub max_bytes: usize,
}

impl Default for FlowConfig {
    /// Zeek's `tcp_inactivity_timeout` (5 min), `udp_inactivity_timeout` and
    /// `icmp_inactivity_timeout` (1 min); seed 0; [`DEFAULT_FLOW_MEMORY`].
    fn default() -> Self {
        FlowConfig {
            tcp_timeout_ns: 300 * SECOND_NS,
            udp_timeout_ns: 60 * SECOND_NS,
            other_timeout_ns: 60 * SECOND_NS,
            community_id_seed: 0,
            max_bytes: DEFAULT_FLOW_MEMORY,
        }
    }
}

impl FlowConfig {
    fn timeout(&self, proto: u8) -> i64 {
        match proto {
            IPPROTO_TCP => self.tcp_timeout_ns,
            IPPROTO_UDP => self.udp_timeout_ns,
            _ => self.other_timeout_ns,
        }
    }

    fn min_timeout(&self) -> i64 {
        self.tcp_timeout_ns
            .min(self.udp_timeout_ns)
            .min(self.other_timeout_ns)
    }
}

/// One side of a flow: an address and a port (ICMP: type or code; none for portless protocols
/// and for IP fragments, whose transport header is not read: there is no reassembly).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Endpoint {
    pub addr: Addr,
    pub port: Option<u16>,
}

/// No VLAN tag at this depth (VLAN IDs are 12 bits).
const NO_VLAN: u16 = u16::MAX;

/// What identifies a flow: `a` ≤ `b` unless the protocol is one-way ICMP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlowKey {
    pub proto: u8,
    vlans: [u16; 2],
    /// The innermost tunnel and its identifier: the same addresses in two VNIs (or inside
    /// and outside a tunnel) are different conversations.
    tunnel: (Encap, Option<u32>),
    pub a: Endpoint,
    pub b: Endpoint,
}

/// Every packet's key is hashed: as five words rather than field by field (the derived hash
/// makes a dozen hasher calls), consistent with `Eq`.
impl std::hash::Hash for FlowKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        fn word(a: &Addr) -> u128 {
            match a {
                Addr::V4(b) => u128::from(u32::from_be_bytes(*b)) | 1 << 127,
                Addr::V6(b) => u128::from_be_bytes(*b),
            }
        }
        let port = |p: Option<u16>| p.map_or(0x1_0000, u64::from);
        h.write_u64(
            u64::from(self.proto)
                | u64::from(self.vlans[0]) << 8
                | u64::from(self.vlans[1]) << 24
                | port(self.a.port) << 40,
        );
        h.write_u64(
            port(self.b.port)
                | u64::from(self.tunnel.0 as u8) << 17
                | self.tunnel.1.map_or(1 << 24, |id| u64::from(id) << 25),
        );
        h.write_u128(word(&self.a.addr));
        h.write_u128(word(&self.b.addr));
    }
}

impl FlowKey {
    pub fn vlan(&self) -> Option<u16> {
        Some(self.vlans[0]).filter(|v| *v != NO_VLAN)
    }

    pub fn inner_vlan(&self) -> Option<u16> {
        Some(self.vlans[1]).filter(|v| *v != NO_VLAN)
    }

    /// The Community ID v1 of the flow (<https://github.com/corelight/community-id-spec>).
    pub fn community_id(&self, seed: u16) -> String {
        community_id(seed, self.proto, &self.a, &self.b)
    }

    /// [`FlowKey::community_id`], written over `out`.
    pub fn community_id_into(&self, seed: u16, out: &mut String) {
        community_id_into(seed, self.proto, &self.a, &self.b, out)
    }
}

fn addr_bytes(a: &Addr) -> &[u8] {
    match a {
        Addr::V4(b) => b,
        Addr::V6(b) => b,
    }
}

/// Community ID v1 of an already ordered pair of endpoints: `1:` + base64(SHA-1(seed, a, b,
/// proto, 0, a.port, b.port)); ports are hashed only when both are known.
pub fn community_id(seed: u16, proto: u8, a: &Endpoint, b: &Endpoint) -> String {
    let mut out = String::with_capacity(30);
    community_id_into(seed, proto, a, b, &mut out);
    out
}

/// [`community_id`], written over `out` (which keeps its allocation).
pub fn community_id_into(seed: u16, proto: u8, a: &Endpoint, b: &Endpoint, out: &mut String) {
    let mut h = Sha1::new();
    h.update(seed.to_be_bytes());
    h.update(addr_bytes(&a.addr));
    h.update(addr_bytes(&b.addr));
    h.update([proto, 0]);
    if let (Some(pa), Some(pb)) = (a.port, b.port) {
        h.update(pa.to_be_bytes());
        h.update(pb.to_be_bytes());
    }
    let digest = h.finalize();
    out.clear();
    out.push_str("1:");
    // Into a buffer on the stack: `encode_string` goes through a chunked encoder whose 1 KiB
    // buffer is cleared on every call. A digest's 20 bytes take 28 characters.
    let mut text = [0u8; 28];
    match base64::engine::general_purpose::STANDARD.encode_slice(digest, &mut text) {
        Ok(n) => crate::text::push_ascii(out, &text[..n]),
        Err(_) => base64::engine::general_purpose::STANDARD.encode_string(digest, out),
    }
}

/// ICMP type → the type of its answer, as Community ID (and Zeek) pair them; `None` for
/// one-way messages, whose "ports" are type and code.
fn icmp_counterpart(proto: u8, t: u8) -> Option<u8> {
    match (proto, t) {
        (IPPROTO_ICMP, _) => match t {
            8 => Some(0),
            0 => Some(8),
            13 => Some(14),
            14 => Some(13),
            15 => Some(16),
            16 => Some(15),
            10 => Some(9),
            17 => Some(18),
            18 => Some(17),
            _ => None,
        },
        (IPPROTO_ICMPV6, _) => match t {
            128 => Some(129),
            129 => Some(128),
            133 => Some(134),
            134 => Some(133),
            135 => Some(136),
            136 => Some(135),
            130 => Some(131),
            131 => Some(130),
            139 => Some(140),
            140 => Some(139),
            144 => Some(145),
            145 => Some(144),
            _ => None,
        },
        _ => None,
    }
}

/// Community ID's endpoint order: address, then port.
fn is_lt(x: &Endpoint, y: &Endpoint) -> bool {
    (x.addr, x.port.unwrap_or(0)) < (y.addr, y.port.unwrap_or(0))
}

/// A flow's key from one packet's view of it, with the endpoints in canonical order (the
/// sender first when `one_way`), and whether the packet was sent by `a`.
fn canonical_key(
    proto: u8,
    tags: &[u16],
    tunnel: (Encap, Option<u32>),
    (src, dst): (Endpoint, Endpoint),
    one_way: bool,
) -> (FlowKey, bool) {
    let mut vlans = [NO_VLAN; 2];
    for (slot, v) in vlans.iter_mut().zip(tags) {
        *slot = *v;
    }
    let (a, b, from_a) = if one_way || is_lt(&src, &dst) || src == dst {
        (src, dst, true)
    } else {
        (dst, src, false)
    };
    let key = FlowKey {
        proto,
        vlans,
        tunnel,
        a,
        b,
    };
    (key, from_a)
}

/// The key of a tunnel's own flow, from the IP header that carried it (`within`: the tunnel
/// that header came through, if any).
pub(super) fn outer_key(o: &Outer, within: (Encap, Option<u32>)) -> (FlowKey, bool) {
    let end = |addr, port| Endpoint { addr, port };
    let endpoints = (end(o.src, o.src_port), end(o.dst, o.dst_port));
    let tags = &o.vlans[..usize::from(o.vlan_count)];
    canonical_key(o.proto, tags, within, endpoints, false)
}

/// The key of a packet's flow and whether the packet was sent by `a` (None without IP).
pub fn key_of(p: &Packet) -> Option<(FlowKey, bool)> {
    let ip = p.ip?;
    let endpoints = |sp: Option<u16>, dp: Option<u16>| {
        (
            Endpoint {
                addr: ip.src,
                port: sp,
            },
            Endpoint {
                addr: ip.dst,
                port: dp,
            },
        )
    };
    let mut one_way = false;
    let (src, dst) = match (ip.proto, p.icmp_type) {
        (IPPROTO_ICMP | IPPROTO_ICMPV6, Some(t)) => match icmp_counterpart(ip.proto, t) {
            Some(answer) => endpoints(Some(u16::from(t)), Some(u16::from(answer))),
            None => {
                one_way = true;
                endpoints(Some(u16::from(t)), p.icmp_code.map(u16::from))
            }
        },
        _ => match (p.src_port, p.dst_port) {
            (Some(s), Some(d)) => endpoints(Some(s), Some(d)),
            _ => endpoints(None, None),
        },
    };
    let tunnel = (p.env.innermost(), p.env.tunnel_id);
    Some(canonical_key(
        ip.proto,
        p.vlans(),
        tunnel,
        (src, dst),
        one_way,
    ))
}

/// What one direction of a flow sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Side {
    pub packets: u64,
    /// Sum of wire lengths.
    pub bytes: u64,
    /// Transport payload bytes, as the headers declare them.
    pub payload_bytes: u64,
}

const FIN: u16 = 0x01;
const SYN: u16 = 0x02;
const RST: u16 = 0x04;
const ACK: u16 = 0x10;

/// A record offset not known (no record starts at byte 0: every format begins with a file
/// header).
pub const NO_OFFSET: u64 = 0;

/// The earlier of two record offsets, either of which may be [`NO_OFFSET`].
fn earliest(a: u64, b: u64) -> u64 {
    match (a, b) {
        (NO_OFFSET, x) | (x, NO_OFFSET) => x,
        (a, b) => a.min(b),
    }
}

/// One packet as flows see it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seen<'a> {
    pub frame: u64,
    /// Offset of the frame's record in the capture stream, or [`NO_OFFSET`].
    pub offset: u64,
    pub ts: i64,
    /// Frames this stands for: 1, or the fragments of a reassembled datagram.
    pub packets: u32,
    pub wire_len: u64,
    pub payload_len: u32,
    pub tcp_flags: Option<u16>,
    /// TLS SNI, HTTP Host or DNS query name carried by the packet.
    pub server_name: Option<&'a str>,
    /// The services its content confirmed.
    pub services: Services,
    /// The tunnels the packet came through (for its inner flow).
    pub envelope: Option<&'a Envelope>,
}

impl<'a> Seen<'a> {
    /// One frame's packet.
    pub(crate) fn packet(frame: u64, ts: i64, wire_len: u32, p: &'a Packet) -> Self {
        Seen {
            frame,
            offset: NO_OFFSET,
            ts,
            packets: 1,
            wire_len: u64::from(wire_len),
            payload_len: p.payload_len.unwrap_or(0),
            tcp_flags: p.tcp_flags,
            server_name: None,
            services: Services::default(),
            envelope: (!p.env.is_empty()).then_some(&p.env),
        }
    }
}

/// A flow, or the part of one that a chunk holds.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Segment {
    pub first_frame: u64,
    /// The latest frame that counted in it.
    pub last_frame: u64,
    /// Offsets of the earliest and latest records that counted in it, in the capture stream;
    /// [`NO_OFFSET`] if none is known (a datagram given up by the reassembly).
    pub first_offset: u64,
    pub last_offset: u64,
    /// Network time (the latest timestamp in the capture so far) at the first packet in file
    /// order, and at the latest: the first decides whether the segment continues an earlier
    /// one of its flow, the latest whether a later packet does ([`Segment::continues`]).
    /// [`NO_TIMESTAMP`] while no packet of the capture had a timestamp.
    first_seen: i64,
    last_seen: i64,
    /// Earliest and latest timestamps; [`NO_TIMESTAMP`] when no packet had one.
    pub first_ts: i64,
    pub last_ts: i64,
    /// Whether endpoint `a` of the key is the originator.
    orig_a: bool,
    /// The first packet was a SYN-ACK: the originator is its receiver.
    flipped: bool,
    /// Indexed by side: 0 = `a`, 1 = `b`.
    sides: [Side; 2],
    /// TCP flags each side sent (OR of its packets), by side. Not in [`Side`], where they
    /// would take 8 bytes each with padding: a live flow is 16 bytes smaller.
    tcp_flags: [u16; 2],
    history: History,
    pub server_name: Option<Box<str>>,
    /// The services its packets' content confirmed (Zeek's `service`).
    pub services: Services,
    /// The tunnels the flow's first packet came through (the flow inside a tunnel).
    pub envelope: Option<Box<Envelope>>,
    /// A tunnel's own flow (e.g. UDP 4789 between mirror source and target): the
    /// encapsulation it carries.
    pub carries: Encap,
}

impl Segment {
    /// A segment whose first packet is `s`, seen at network time `now`.
    fn new(proto: u8, from_a: bool, s: &Seen, now: i64) -> Self {
        let synack =
            proto == IPPROTO_TCP && s.tcp_flags.is_some_and(|f| f & (SYN | ACK) == SYN | ACK);
        let mut seg = Segment {
            first_frame: s.frame,
            last_frame: s.frame,
            first_offset: s.offset,
            last_offset: s.offset,
            first_seen: now,
            last_seen: now,
            first_ts: NO_TIMESTAMP,
            last_ts: NO_TIMESTAMP,
            orig_a: from_a != synack,
            flipped: synack,
            sides: [Side::default(); 2],
            tcp_flags: [0; 2],
            history: History::default(),
            server_name: None,
            services: Services::default(),
            envelope: s.envelope.map(|e| Box::new(*e)),
            carries: Encap::None,
        };
        seg.add(proto, from_a, s, now);
        seg
    }

    /// Count packet `s`, seen at network time `now`.
    fn add(&mut self, proto: u8, from_a: bool, s: &Seen, now: i64) {
        let side = usize::from(!from_a);
        self.last_seen = self.last_seen.max(now);
        let d = &mut self.sides[side];
        d.packets += u64::from(s.packets);
        d.bytes += s.wire_len;
        d.payload_bytes += u64::from(s.payload_len);
        self.last_frame = self.last_frame.max(s.frame);
        self.first_offset = earliest(self.first_offset, s.offset);
        self.last_offset = self.last_offset.max(s.offset);
        if s.ts != NO_TIMESTAMP {
            if self.first_ts == NO_TIMESTAMP || s.ts < self.first_ts {
                self.first_ts = s.ts;
            }
            if self.last_ts == NO_TIMESTAMP || s.ts > self.last_ts {
                self.last_ts = s.ts;
            }
        }
        match proto {
            IPPROTO_TCP => {
                let Some(f) = s.tcp_flags else { return };
                self.tcp_flags[side] |= f;
                if f & SYN != 0 {
                    let l = if f & ACK != 0 { L_SYNACK } else { L_SYN };
                    self.history.push(l, side);
                }
                if f & FIN != 0 {
                    self.history.push(L_FIN, side);
                }
                if f & RST != 0 {
                    self.history.push(L_RST, side);
                }
                if s.payload_len > 0 {
                    self.history.push(L_DATA, side);
                } else if f & (SYN | FIN | RST | ACK) == ACK {
                    self.history.push(L_ACK, side);
                }
            }
            IPPROTO_UDP if s.payload_len > 0 => self.history.push(L_DATA, side),
            _ => {}
        }
        if self.server_name.is_none()
            && let Some(name) = s.server_name
        {
            self.server_name = Some(name.into());
        }
        self.services |= s.services;
    }

    fn packets(&self) -> u64 {
        self.sides[0].packets + self.sides[1].packets
    }

    /// A TCP connection closed: a FIN from each side, or a RST.
    fn closed(&self) -> bool {
        self.history.closed()
    }

    /// Whether a packet (or a segment starting) at network time `now` continues this flow:
    /// network time has not moved on from its latest packet by more than `timeout` (a flow
    /// tracker's idle timer, which reads the capture packet by packet). A timestamp earlier
    /// than the latest so far does not bring a flow back: which packets make a flow depends on
    /// their order in the file alone, not on where chunks end.
    fn continues(&self, now: i64, timeout: i64) -> bool {
        self.last_seen == NO_TIMESTAMP
            || now == NO_TIMESTAMP
            || i128::from(now) - i128::from(self.last_seen) <= i128::from(timeout)
    }

    /// A segment of a range of a split capture, whose worker did not read the ranges before:
    /// network time there was `before` (their latest timestamp) at the least.
    fn seen_after(&mut self, before: i64) {
        self.first_seen = self.first_seen.max(before);
        self.last_seen = self.last_seen.max(before);
    }

    /// Fold a later segment of the same flow into this one.
    fn merge(&mut self, later: Segment) {
        for (d, o) in self.sides.iter_mut().zip(later.sides) {
            d.packets += o.packets;
            d.bytes += o.bytes;
            d.payload_bytes += o.payload_bytes;
        }
        for (f, o) in self.tcp_flags.iter_mut().zip(later.tcp_flags) {
            *f |= o;
        }
        self.last_frame = self.last_frame.max(later.last_frame);
        self.last_seen = self.last_seen.max(later.last_seen);
        self.first_offset = earliest(self.first_offset, later.first_offset);
        self.last_offset = self.last_offset.max(later.last_offset);
        if later.first_ts != NO_TIMESTAMP
            && (self.first_ts == NO_TIMESTAMP || later.first_ts < self.first_ts)
        {
            self.first_ts = later.first_ts;
        }
        if later.last_ts != NO_TIMESTAMP
            && (self.last_ts == NO_TIMESTAMP || later.last_ts > self.last_ts)
        {
            self.last_ts = later.last_ts;
        }
        self.history.extend(&later.history);
        if self.server_name.is_none() {
            self.server_name = later.server_name;
        }
        self.services |= later.services;
    }
}

/// One segment of a chunk, for its [`FlowTable`] shard: its key and the key's hash (computed
/// once, on the worker that folded the chunk, and kept with the flow in the table), and
/// whether it is the key's first segment in the chunk and so may continue a flow of an
/// earlier chunk.
#[derive(Debug)]
pub(crate) struct KeyedSegment {
    hash: u64,
    key: FlowKey,
    seg: Segment,
    first: bool,
}

/// Where a segment is in a [`ChunkFlows`]: its shard (the low bits, below [`SHARDS`]) and its
/// index in that shard's part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct At(u64);

impl At {
    const SHARD_BITS: u32 = SHARDS.trailing_zeros();

    fn new((shard, i): (usize, usize)) -> Self {
        At((i as u64) << Self::SHARD_BITS | shard as u64)
    }

    fn shard(self) -> usize {
        (self.0 & (SHARDS as u64 - 1)) as usize
    }

    fn i(self) -> usize {
        (self.0 >> Self::SHARD_BITS) as usize
    }
}

const _: () = assert!(SHARDS.is_power_of_two());

/// The flows of one chunk, in order of first packet, split by the [`FlowTable`] shard of
/// their keys (so that the writer only hands each shard its part).
#[derive(Debug)]
pub struct ChunkFlows {
    /// Where each key's latest segment is ([`At`]), hashed by its key's hash (kept in the
    /// segment). Eight bytes a bucket, not the 24 of the hash and both indexes: a flood's chunk
    /// adds a new key at a random bucket for almost every packet, and the smaller index stays
    /// in the cache beside the chunk's segments (measured: the inserts' stores missed it).
    index: HashTable<At>,
    /// Per shard, its segments in order of first packet.
    parts: Vec<Vec<KeyedSegment>>,
    /// Network time: the latest timestamp of the chunk's packets so far and of every frame
    /// before the chunk ([`crate::reader::Chunk::time_before`]); [`NO_TIMESTAMP`], the least
    /// `i64`, while none had one.
    now: i64,
    /// The last packet's key and segment: packets come in bursts of one flow, and this saves
    /// hashing their keys.
    last: Option<(FlowKey, At)>,
}

impl Default for ChunkFlows {
    fn default() -> Self {
        ChunkFlows {
            index: HashTable::new(),
            parts: (0..SHARDS).map(|_| Vec::new()).collect(),
            now: NO_TIMESTAMP,
            last: None,
        }
    }
}

thread_local! {
    /// Segments of the last chunk this thread folded: the next chunk's tables start at that
    /// size (traffic keeps its shape from one chunk to the next), so that a flood's do not
    /// grow a dozen times per chunk, moving every segment each time.
    static LAST_SEGMENTS: Cell<usize> = const { Cell::new(0) };
}

impl ChunkFlows {
    /// Empty, with room for as many segments as the last chunk this thread folded had, for a
    /// chunk whose frames come after network time `time_before`.
    pub(crate) fn sized_like_the_last(time_before: Option<i64>) -> Self {
        let n = LAST_SEGMENTS.with(Cell::get);
        // A shard's share, with an eighth more for the luck of the hash.
        let per_shard = n.div_ceil(SHARDS) * 9 / 8;
        ChunkFlows {
            index: HashTable::with_capacity(n),
            parts: (0..SHARDS).map(|_| Vec::with_capacity(per_shard)).collect(),
            now: time_before.unwrap_or(NO_TIMESTAMP),
            last: None,
        }
    }

    fn segment(&mut self, at: At) -> &mut Segment {
        &mut self.parts[at.shard()][at.i()].seg
    }

    /// Where the latest segment of `key` (whose hash is `hash`) is, if the chunk has one.
    fn find(&self, hash: u64, key: &FlowKey) -> Option<At> {
        let parts = &self.parts;
        self.index
            .find(hash, |&at| {
                let k = &parts[at.shard()][at.i()];
                k.hash == hash && k.key == *key
            })
            .copied()
    }

    /// Fold packet `p` in, as `s` describes it (`s.ts` is the time it counts at).
    pub(crate) fn add(&mut self, cfg: &FlowConfig, p: &Packet, s: &Seen) {
        self.now = self.now.max(s.ts);
        let now = self.now;
        // A tunnelled packet counts in each tunnel's own flow too, outermost first.
        for (layer, carrier, within) in p.env.carriers() {
            let (key, from_a) = outer_key(carrier, within);
            let envelope = (layer > 0).then(|| p.env.outer_layers(layer));
            let seen = Seen {
                payload_len: carrier.payload_len,
                tcp_flags: None,
                server_name: None,
                services: Services::default(),
                envelope: envelope.as_ref(),
                ..*s
            };
            let at = self.add_key(cfg, key, from_a, &seen, now);
            self.segment(at).carries = p.env.layers()[layer];
        }
        if let Some((key, from_a)) = key_of(p) {
            self.add_key(cfg, key, from_a, s, now);
        }
    }

    /// Fold a packet of flow `key` in, seen at network time `now`; where its segment is.
    fn add_key(&mut self, cfg: &FlowConfig, key: FlowKey, from_a: bool, s: &Seen, now: i64) -> At {
        let timeout = cfg.timeout(key.proto);
        let (hash, known) = match self.last {
            Some((k, at)) if k == key => (None, Some(at)),
            _ => {
                let hash = table::key_hash(&key);
                (Some(hash), self.find(hash, &key))
            }
        };
        match known {
            Some(at) if self.segment(at).continues(now, timeout) => {
                self.segment(at).add(key.proto, from_a, s, now);
                self.last = Some((key, at));
                at
            }
            known => {
                let hash = hash.unwrap_or_else(|| table::key_hash(&key));
                let first = known.is_none();
                let shard = table::shard_of(hash);
                let part = &mut self.parts[shard];
                let at = At::new((shard, part.len()));
                part.push(KeyedSegment {
                    hash,
                    key,
                    seg: Segment::new(key.proto, from_a, s, now),
                    first,
                });
                match known {
                    // The key's latest segment is the new one.
                    Some(earlier) => {
                        if let Some(slot) = self.index.find_mut(hash, |&a| a == earlier) {
                            *slot = at;
                        }
                    }
                    None => {
                        let parts = &self.parts;
                        self.index
                            .insert_unique(hash, at, |&a| parts[a.shard()][a.i()].hash);
                    }
                }
                self.last = Some((key, at));
                at
            }
        }
    }

    /// Give the latest flow of `key` a server name (unless it has one) and services: for a
    /// message whose fields were known only after later packets.
    pub(crate) fn confirm(&mut self, key: &FlowKey, name: Option<&str>, services: Services) {
        if let Some(at) = self.find(table::key_hash(key), key) {
            let seg = self.segment(at);
            if seg.server_name.is_none() {
                seg.server_name = name.map(Into::into);
            }
            seg.services |= services;
        }
    }

    pub fn len(&self) -> usize {
        self.parts.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The parts, for the [`FlowTable`]; the index is dropped here, on the worker thread.
    pub fn into_shards(self) -> ShardedFlows {
        LAST_SEGMENTS.with(|n| n.set(self.len()));
        ShardedFlows {
            parts: self.parts,
            max_ts: (self.now != NO_TIMESTAMP).then_some(self.now),
        }
    }
}

/// A chunk's flows, split by shard ([`ChunkFlows::into_shards`]); each part in order of first
/// packet.
#[derive(Debug, Default)]
pub struct ShardedFlows {
    parts: Vec<Vec<KeyedSegment>>,
    max_ts: Option<i64>,
}

impl ShardedFlows {
    /// Segments below which merging the chunk on the caller's thread beats handing the shards
    /// to a thread pool (ordinary traffic: a few hundred flows per chunk of 8 Ki frames).
    const PARALLEL_MERGE: usize = 4096;

    /// Whether [`FlowTable::merge`] spreads this chunk over the pool's threads; when it does
    /// not, calling it outside a pool costs no thread hand-off.
    pub fn merges_in_parallel(&self) -> bool {
        self.parts.iter().map(Vec::len).sum::<usize>() >= Self::PARALLEL_MERGE
            && self.parts.iter().filter(|p| !p.is_empty()).count() > 1
    }
}

/// A flow's history string, without an allocation: `^` and at most 12 letters.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryText {
    buf: [u8; 13],
    len: u8,
}

impl HistoryText {
    fn push(&mut self, letter: u8) {
        if let Some(slot) = self.buf.get_mut(usize::from(self.len)) {
            *slot = letter;
            self.len += 1;
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII letters and `^` are pushed.
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("")
    }
}

impl std::ops::Deref for HistoryText {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for HistoryText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl std::fmt::Display for HistoryText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for HistoryText {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Why a flow's row was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EndReason {
    /// No packet for longer than its protocol's inactivity timeout.
    Idle,
    /// A TCP connection closed by a FIN from each side or a RST (written once idle or at the
    /// end of the capture).
    TcpClose,
    /// Written early: the live flows reached their memory budget. A later packet of the same
    /// key starts a new flow.
    Evicted,
    /// Still live when the capture ended.
    EndOfCapture,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Idle => "idle",
            EndReason::TcpClose => "tcp_close",
            EndReason::Evicted => "evicted",
            EndReason::EndOfCapture => "end_of_capture",
        }
    }
}

/// A finished (or, at the end of the capture, last) flow.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Flow {
    pub key: FlowKey,
    pub seg: Segment,
    pub end: EndReason,
}

impl Flow {
    pub fn originator(&self) -> &Endpoint {
        if self.seg.orig_a {
            &self.key.a
        } else {
            &self.key.b
        }
    }

    pub fn responder(&self) -> &Endpoint {
        if self.seg.orig_a {
            &self.key.b
        } else {
            &self.key.a
        }
    }

    fn orig_side(&self) -> usize {
        usize::from(!self.seg.orig_a)
    }

    pub fn orig(&self) -> &Side {
        &self.seg.sides[self.orig_side()]
    }

    pub fn resp(&self) -> &Side {
        &self.seg.sides[1 - self.orig_side()]
    }

    /// TCP flags the originator sent (OR of its packets).
    pub fn orig_tcp_flags(&self) -> u16 {
        self.seg.tcp_flags[self.orig_side()]
    }

    /// TCP flags the responder sent.
    pub fn resp_tcp_flags(&self) -> u16 {
        self.seg.tcp_flags[1 - self.orig_side()]
    }

    pub fn packets(&self) -> u64 {
        self.seg.packets()
    }

    pub fn bytes(&self) -> u64 {
        self.seg.sides[0].bytes + self.seg.sides[1].bytes
    }

    /// Zeek's history string: `^` if flipped, then each letter once per direction in order of
    /// first occurrence, upper case for the originator.
    pub fn history(&self) -> HistoryText {
        let orig = self.orig_side();
        let mut h = HistoryText::default();
        if self.seg.flipped {
            h.push(b'^');
        }
        for (letter, side) in self.seg.history.events() {
            h.push(if side == orig {
                letter
            } else {
                letter.to_ascii_lowercase()
            });
        }
        h
    }

    /// Zeek's `conn_state`, from the TCP events each side was seen to send (Zeek tracks
    /// sequence numbers too; this is the flag-level approximation).
    pub fn conn_state(&self) -> &'static str {
        let orig = self.orig_side();
        let resp = 1 - orig;
        let (o, r) = (self.orig(), self.resp());
        match self.key.proto {
            IPPROTO_TCP => {
                let h = &self.seg.history;
                let state = |side: usize, other: usize| -> TcpState {
                    let sent = |l: usize| h.has(l, side);
                    if sent(L_RST) {
                        TcpState::Reset
                    } else if sent(L_FIN) {
                        TcpState::Closed
                    } else if sent(L_SYN) || sent(L_SYNACK) {
                        // Established once the peer has answered (and the handshake's
                        // third packet, or later data, came back).
                        let answered = if sent(L_SYN) {
                            h.has(L_SYNACK, other) && (sent(L_ACK) || sent(L_DATA))
                        } else {
                            h.has(L_ACK, other) || h.has(L_DATA, other)
                        };
                        if answered {
                            TcpState::Established
                        } else if sent(L_SYN) {
                            TcpState::SynSent
                        } else {
                            TcpState::SynAckSent
                        }
                    } else if self.seg.sides[side].packets > 0 {
                        TcpState::Partial
                    } else {
                        TcpState::Inactive
                    }
                };
                zeek_tcp_state(
                    state(orig, resp),
                    state(resp, orig),
                    o.payload_bytes == 0 && r.payload_bytes == 0,
                    || self.history(),
                )
            }
            IPPROTO_UDP => match (o.packets > 0, r.packets > 0) {
                (true, true) => "SF",
                (true, false) => "S0",
                (false, true) => "SHR",
                (false, false) => "OTH",
            },
            _ => "OTH",
        }
    }
}

/// The largest flow an item can be asked to hold: IPv6 endpoints, VLANs, every counter at
/// its maximum and a 300-byte server name.
#[cfg(test)]
pub(crate) fn worst_case_flow(i: u16) -> Flow {
    let addr = Addr::V6([0xff; 16]);
    let side = Side {
        packets: u64::MAX / 2,
        bytes: u64::MAX / 2,
        payload_bytes: u64::MAX / 2,
    };
    Flow {
        key: FlowKey {
            proto: 255,
            vlans: [4095, 4095],
            tunnel: (Encap::None, None),
            a: Endpoint {
                addr,
                port: Some(u16::MAX),
            },
            b: Endpoint {
                addr,
                port: Some(i),
            },
        },
        seg: Segment {
            first_frame: u64::MAX,
            last_frame: u64::MAX,
            first_offset: u64::MAX,
            last_offset: u64::MAX,
            first_seen: i64::MIN + 1,
            last_seen: i64::MAX,
            first_ts: i64::MIN + 1,
            last_ts: i64::MAX,
            orig_a: true,
            flipped: true,
            sides: [side; 2],
            tcp_flags: [0xfff; 2],
            history: History::default(),
            server_name: Some("é".repeat(150).into()),
            services: Services::SSL,
            envelope: None,
            carries: Encap::None,
        },
        end: EndReason::EndOfCapture,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dissect::Ip;

    pub(super) fn v4(last: u8) -> Addr {
        Addr::V4([10, 0, 0, last])
    }

    pub(super) fn tcp(src: u8, sp: u16, dst: u8, dp: u16, flags: u16) -> Packet {
        Packet {
            ip: Some(Ip {
                version: 4,
                src: v4(src),
                dst: v4(dst),
                proto: IPPROTO_TCP,
                len: 40,
                ttl: 64,
                frag_offset: 0,
                more_fragments: false,
            }),
            src_port: Some(sp),
            dst_port: Some(dp),
            tcp_flags: Some(flags),
            payload_len: Some(0),
            ..Packet::default()
        }
    }

    fn with_payload(mut p: Packet, n: u32) -> Packet {
        p.payload_len = Some(n);
        p
    }

    /// Feed packets (timestamps in seconds) through chunks of `chunk` packets.
    pub(super) fn run(cfg: FlowConfig, packets: &[(i64, Packet)], chunk: usize) -> Vec<Flow> {
        run_with_stats(cfg, packets, chunk).0
    }

    /// Feed packets (timestamps in seconds) through chunks of `chunk` packets; every flow
    /// written, by first frame, and the totals.
    pub(super) fn run_with_stats(
        cfg: FlowConfig,
        packets: &[(i64, Packet)],
        chunk: usize,
    ) -> (Vec<Flow>, FlowStats) {
        let mut table = FlowTable::new(cfg, crate::columns::Rows::Build);
        let mut out = Vec::new();
        for (c, part) in packets.chunks(chunk).enumerate() {
            let mut cf = ChunkFlows::default();
            for (i, (ts, p)) in part.iter().enumerate() {
                let seen = Seen::packet((c * chunk + i + 1) as u64, ts * SECOND_NS, 60, p);
                cf.add(&cfg, p, &seen);
            }
            table.merge(cf.into_shards());
            out.extend(table.take_retired().into_vec());
        }
        let (rest, stats) = table.finish();
        out.extend(rest.into_vec());
        out.sort_by_key(|f| f.seg.first_frame);
        assert_eq!(stats.flows as usize, out.len());
        (out, stats)
    }

    fn handshake_and_close(ts: i64) -> Vec<(i64, Packet)> {
        vec![
            (ts, tcp(1, 40000, 2, 80, SYN)),
            (ts, tcp(2, 80, 1, 40000, SYN | ACK)),
            (ts, tcp(1, 40000, 2, 80, ACK)),
            (ts + 1, with_payload(tcp(1, 40000, 2, 80, ACK | 0x08), 100)),
            (ts + 1, with_payload(tcp(2, 80, 1, 40000, ACK | 0x08), 1000)),
            (ts + 2, tcp(1, 40000, 2, 80, FIN | ACK)),
            (ts + 2, tcp(2, 80, 1, 40000, FIN | ACK)),
            (ts + 2, tcp(1, 40000, 2, 80, ACK)),
        ]
    }

    #[test]
    fn a_segment_s_place_in_a_chunk_packs_into_one_word() {
        let largest = usize::try_from(u64::MAX >> At::SHARD_BITS).unwrap_or(usize::MAX);
        for place in [
            (0, 0),
            (SHARDS - 1, 0),
            (3, 1),
            (5, 8_191),
            (SHARDS - 1, largest),
        ] {
            let at = At::new(place);
            assert_eq!((at.shard(), at.i()), place);
        }
        assert_ne!(At::new((1, 2)), At::new((2, 1)));
    }

    #[test]
    fn a_closed_connection_is_sf() {
        let flows = run(FlowConfig::default(), &handshake_and_close(100), 100);
        assert_eq!(flows.len(), 1);
        let f = &flows[0];
        assert_eq!(f.originator().addr, v4(1));
        assert_eq!(f.originator().port, Some(40000));
        assert_eq!(f.responder().port, Some(80));
        assert_eq!(f.conn_state(), "SF");
        assert_eq!(f.history(), "ShADdFf");
        assert_eq!((f.orig().packets, f.resp().packets), (5, 3));
        assert_eq!(
            (f.orig().payload_bytes, f.resp().payload_bytes),
            (100, 1000)
        );
        assert_eq!(f.seg.first_ts, 100 * SECOND_NS);
        assert_eq!(f.seg.last_ts, 102 * SECOND_NS);
    }

    #[test]
    fn conn_states() {
        let cfg = FlowConfig::default();
        let one = |ps: Vec<(i64, Packet)>| {
            let f = run(cfg, &ps, 100);
            assert_eq!(f.len(), 1);
            (f[0].conn_state(), f[0].history().to_string())
        };
        assert_eq!(one(vec![(0, tcp(1, 5, 2, 80, SYN))]), ("S0", "S".into()));
        assert_eq!(
            one(vec![
                (0, tcp(1, 5, 2, 80, SYN)),
                (0, tcp(2, 80, 1, 5, RST | ACK))
            ]),
            ("REJ", "Sr".into())
        );
        assert_eq!(
            one(vec![
                (0, tcp(1, 5, 2, 80, SYN)),
                (0, tcp(2, 80, 1, 5, SYN | ACK)),
                (0, tcp(1, 5, 2, 80, ACK)),
            ]),
            ("S1", "ShA".into())
        );
        assert_eq!(
            one(vec![
                (0, tcp(1, 5, 2, 80, SYN)),
                (0, tcp(2, 80, 1, 5, SYN | ACK)),
                (0, tcp(1, 5, 2, 80, ACK)),
                (0, tcp(1, 5, 2, 80, RST)),
            ]),
            ("RSTO", "ShAR".into())
        );
        assert_eq!(
            one(vec![(0, tcp(1, 5, 2, 80, SYN)), (0, tcp(1, 5, 2, 80, RST))]),
            ("RSTOS0", "SR".into())
        );
        // Midstream: no handshake seen.
        assert_eq!(
            one(vec![
                (0, with_payload(tcp(1, 5, 2, 80, ACK), 10)),
                (0, tcp(2, 80, 1, 5, ACK)),
            ]),
            ("OTH", "Da".into())
        );
        // First packet a SYN-ACK: flipped, the SYN-ACK's receiver is the originator.
        let f = run(
            cfg,
            &[(0, tcp(2, 80, 1, 5, SYN | ACK)), (0, tcp(1, 5, 2, 80, ACK))],
            100,
        );
        assert_eq!(f[0].originator().port, Some(5));
        assert_eq!(f[0].history(), "^hA");
    }

    #[test]
    fn idle_flows_split_and_chunking_does_not_matter() {
        let mut packets = handshake_and_close(0);
        // The same 5-tuple again after 301 s (TCP timeout 300 s): a second flow; after 299 s it
        // would have continued.
        packets.extend(handshake_and_close(303));
        packets.extend(handshake_and_close(303 + 2 + 299));
        // A UDP exchange idle 61 s (timeout 60 s) and a ping pair.
        let mut udp = tcp(3, 5353, 4, 53, 0);
        udp.tcp_flags = None;
        if let Some(ip) = &mut udp.ip {
            ip.proto = IPPROTO_UDP;
        }
        packets.push((10, with_payload(udp, 30)));
        packets.push((71, with_payload(udp, 30)));
        packets.sort_by_key(|(t, _)| *t);
        let reference = run(FlowConfig::default(), &packets, packets.len());
        assert_eq!(reference.len(), 4);
        assert_eq!(
            reference.iter().map(|f| f.packets()).collect::<Vec<_>>(),
            vec![8, 1, 1, 16]
        );
        for chunk in [1, 2, 3, 5, 7] {
            assert_eq!(
                run(FlowConfig::default(), &packets, chunk),
                reference,
                "{chunk}"
            );
        }
        let short = FlowConfig {
            tcp_timeout_ns: SECOND_NS / 2,
            ..FlowConfig::default()
        };
        // With a 0.5 s timeout each 1 s gap of the handshakes splits the flow.
        assert_eq!(run(short, &packets, packets.len()).len(), 2 + 3 * 3);
        for chunk in [1, 2, 3] {
            assert_eq!(
                run(short, &packets, chunk),
                run(short, &packets, packets.len())
            );
        }
    }
}
