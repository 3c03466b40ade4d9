//! Per-capture statistics, accumulated per chunk in parallel and merged in file order.

use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::BTreeMap;

use std::hash::BuildHasher as _;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use rustc_hash::{FxBuildHasher, FxHashMap};

use crate::app::AppFields;
use crate::dissect::frag::FragStats;
use crate::dissect::{Addr, Encap, Packet};
use crate::flows::FlowStats;
use crate::reader::{FrameMeta, NO_TIMESTAMP};

/// Counts and extents of one capture (or one chunk of it).
///
/// Serialisable, so that the summaries of ranges converted on other machines can be merged
/// (see `split_run`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    #[serde(deserialize_with = "names::network")]
    pub network: BTreeMap<&'static str, u64>,
    /// Packets per IP protocol number (of the outermost IP header).
    pub ip_protos: BTreeMap<u8, u64>,
    /// Packets whose decoding stopped early (they still have a row).
    pub decode_errors: u64,
    /// QUIC client Initial packets decrypted (until their connection's ClientHello was read).
    pub quic_initials: u64,
    /// QUIC Initial packets that could not be decrypted (wrong keys, cut short, malformed)
    /// and long-header packets on UDP port 443 of a QUIC version pcaplab cannot read.
    pub quic_undecryptable: u64,
    /// Packets and wire bytes per IP address (outermost header), source or destination.
    /// At most [`TALKERS_CAP`] entries: see [`Summary::merge`]. Hashed, not ordered: a chunk
    /// of a scan brings thousands of new addresses, each merged in (see
    /// [`Summary::top_talkers`] for the ranking).
    pub talkers: FxHashMap<Addr, Traffic>,
    /// True once [`Summary::talkers`] has been pruned: the surviving counts are then exact
    /// only for addresses that were never pruned, and the ranking is approximate.
    pub talkers_truncated: bool,
    /// Packets per TCP/UDP/SCTP port, source or destination.
    pub ports: PortCounts,
    /// Packets and bytes over time, in at most [`TIMELINE_BUCKETS`] buckets.
    pub timeline: Timeline,
    /// DNS queries per query name, TLS ClientHellos per server name (SNI), HTTP requests per
    /// Host. At most [`NAMES_CAP`] names each: see [`Summary::merge`].
    pub dns_names: BTreeMap<String, u64>,
    pub tls_snis: BTreeMap<String, u64>,
    pub http_hosts: BTreeMap<String, u64>,
    /// True once a name map has been pruned (its ranking is then approximate).
    pub names_truncated: bool,
    /// Packets per encapsulation (`vxlan`, `gre`, `erspan2`, ...): a packet counts once for
    /// each tunnel it came through.
    #[serde(deserialize_with = "names::tunnels")]
    pub tunnels: BTreeMap<&'static str, u64>,
    /// IP datagrams reassembled from fragments, and those given up.
    pub fragments: FragStats,
    /// The capture's flows, when they were tracked: set once for the whole capture by the
    /// conversion, never by a chunk.
    pub flows: Option<FlowStats>,
}

/// What one address sent and received.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Traffic {
    pub packets: u64,
    /// Sum of wire_len.
    pub bytes: u64,
}

impl Traffic {
    fn add(&mut self, other: Traffic) {
        self.packets += other.packets;
        self.bytes += other.bytes;
    }
}

/// Packets per port. A chunk's counts are the ports it saw, in order (a chunk counts into a
/// plain array and hands over only those); a capture's total is one counter per port,
/// allocated at its first port: a chunk of a scan or of DNS traffic brings thousands of
/// ports, each then merged as an array element instead of an ordered map's entry.
#[derive(Clone, Debug, Default)]
pub struct PortCounts {
    /// (port, packets), ascending, no zero counts; empty once `all` is allocated.
    seen: Vec<(u16, u64)>,
    /// Packets indexed by port, or empty.
    all: Vec<u64>,
}

/// The ports counted, ascending, with their counts, of counters indexed by port.
fn counted<T: Copy + Default + PartialEq>(counts: &[T]) -> impl Iterator<Item = (u16, T)> + '_ {
    (0..=u16::MAX)
        .zip(counts)
        .filter(|(_, n)| **n != T::default())
        .map(|(p, n)| (p, *n))
}

impl PortCounts {
    /// A chunk's counts: packets per port, indexed by port (empty when it saw none).
    fn of_chunk(counts: &[u32]) -> Self {
        PortCounts {
            seen: counted(counts).map(|(p, n)| (p, u64::from(n))).collect(),
            all: Vec::new(),
        }
    }

    /// One counter per port, allocated (and filled with the ports seen) on first use.
    fn all(&mut self) -> &mut [u64] {
        if self.all.is_empty() {
            self.all = vec![0; 1 << 16];
            for (p, n) in self.seen.drain(..) {
                self.all[usize::from(p)] = n;
            }
        }
        &mut self.all
    }

    /// Count `n` packets on `port`.
    pub fn add(&mut self, port: u16, n: u64) {
        self.all()[usize::from(port)] += n;
    }

    /// The packets counted on `port`, if any.
    pub fn get(&self, port: u16) -> Option<u64> {
        match self.all.get(usize::from(port)) {
            Some(n) => Some(*n).filter(|n| *n > 0),
            None => self
                .seen
                .binary_search_by_key(&port, |(p, _)| *p)
                .ok()
                .map(|i| self.seen[i].1),
        }
    }

    /// The ports with packets, ascending, with their counts.
    pub fn iter(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.seen.iter().copied().chain(counted(&self.all))
    }

    fn merge(&mut self, other: &PortCounts) {
        if other.iter().next().is_none() {
            return;
        }
        let all = self.all();
        for (p, n) in other.iter() {
            all[usize::from(p)] += n;
        }
    }
}

/// Equal when the same ports have the same counts (however the counters were allocated).
impl PartialEq for PortCounts {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for PortCounts {}

impl Extend<(u16, u64)> for PortCounts {
    fn extend<I: IntoIterator<Item = (u16, u64)>>(&mut self, iter: I) {
        for (port, n) in iter {
            self.add(port, n);
        }
    }
}

impl FromIterator<(u16, u64)> for PortCounts {
    fn from_iter<I: IntoIterator<Item = (u16, u64)>>(iter: I) -> Self {
        let mut counts = PortCounts::default();
        counts.extend(iter);
        counts
    }
}

/// Written as a map of the ports with packets, as an ordered map of them would be.
impl serde::Serialize for PortCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        // The length first: postcard writes it before the entries.
        let mut map = s.serialize_map(Some(self.iter().count()))?;
        for (port, n) in self.iter() {
            map.serialize_entry(&port, &n)?;
        }
        map.end()
    }
}

impl<'de> serde::Deserialize<'de> for PortCounts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<u16, u64>::deserialize(d)?;
        Ok(PortCounts {
            seen: map.into_iter().filter(|(_, n)| *n > 0).collect(),
            all: Vec::new(),
        })
    }
}

/// Most buckets a [`Timeline`] spans.
pub const TIMELINE_BUCKETS: usize = 120;
/// The narrowest [`Timeline`] bucket: 1 ms.
const TIMELINE_BASE_NS: i64 = 1_000_000;
/// Widest bucket: 1 ms × 2^42, about 139 years — any two i64 nanosecond timestamps fit.
const TIMELINE_MAX_SHIFT: u32 = 42;

/// Packets and wire bytes over time: buckets aligned to the epoch, 1 ms × 2^`shift` wide,
/// the narrowest width at which the capture's time span fits [`TIMELINE_BUCKETS`] buckets.
///
/// Widths are powers of two so a bucket of one width is exactly two of the next narrower,
/// and aligned to the epoch so every chunk cuts time at the same places: merging chunks
/// counted apart gives the same timeline as counting the capture at once.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Timeline {
    shift: u32,
    /// Bucket index (timestamp / width, rounded down) → traffic.
    buckets: BTreeMap<i64, Traffic>,
}

impl Timeline {
    fn width_ns(shift: u32) -> i64 {
        TIMELINE_BASE_NS << shift
    }

    /// Bucket width in nanoseconds.
    pub fn bucket_ns(&self) -> i64 {
        Self::width_ns(self.shift)
    }

    /// Count one packet at `ts_ns`.
    fn add(&mut self, ts_ns: i64, t: Traffic) {
        let idx = ts_ns.div_euclid(self.bucket_ns());
        self.buckets.entry(idx).or_default().add(t);
        self.fit();
    }

    /// Widen the buckets until the span fits.
    fn fit(&mut self) {
        while self.shift < TIMELINE_MAX_SHIFT && self.span() > TIMELINE_BUCKETS as i64 {
            self.widen();
        }
    }

    fn span(&self) -> i64 {
        match (
            self.buckets.first_key_value(),
            self.buckets.last_key_value(),
        ) {
            (Some((a, _)), Some((b, _))) => b - a + 1,
            _ => 0,
        }
    }

    fn widen(&mut self) {
        self.shift += 1;
        let old = std::mem::take(&mut self.buckets);
        for (idx, t) in old {
            self.buckets.entry(idx.div_euclid(2)).or_default().add(t);
        }
    }

    fn merge(&mut self, other: &Timeline) {
        let mut other = other.clone();
        while other.shift < self.shift {
            other.widen();
        }
        while self.shift < other.shift {
            self.widen();
        }
        for (idx, t) in other.buckets {
            self.buckets.entry(idx).or_default().add(t);
        }
        self.fit();
    }

    /// The widest timeline: [`TIMELINE_BUCKETS`] buckets of `value` packets and bytes.
    #[cfg(test)]
    pub(crate) fn full(value: u64) -> Timeline {
        let t = Traffic {
            packets: value,
            bytes: value,
        };
        Timeline {
            shift: TIMELINE_MAX_SHIFT,
            buckets: (0..TIMELINE_BUCKETS as i64).map(|i| (i, t)).collect(),
        }
    }

    /// The start (ns since the epoch) of the first bucket and every bucket from there to the
    /// last one with traffic, empty ones included; `None` without timestamps.
    pub fn dense(&self) -> Option<(i64, Vec<Traffic>)> {
        let (&first, _) = self.buckets.first_key_value()?;
        let (&last, _) = self.buckets.last_key_value()?;
        let series = (first..=last)
            .map(|i| self.buckets.get(&i).copied().unwrap_or_default())
            .collect();
        Some((first.saturating_mul(self.bucket_ns()), series))
    }
}

/// Most addresses [`Summary::talkers`] keeps; a random-source scan would otherwise grow it
/// without bound. The item shows the 10 busiest: 16,384 keeps those exact on any capture with
/// fewer addresses, and the map (with a chunk's addresses merged in before it is pruned) under
/// 2 MiB.
pub const TALKERS_CAP: usize = 16_384;

/// Biggest first: packets desc, bytes desc, then address asc so ties are deterministic.
fn talker_order(a: &(Addr, Traffic), b: &(Addr, Traffic)) -> Ordering {
    b.1.packets
        .cmp(&a.1.packets)
        .then(b.1.bytes.cmp(&a.1.bytes))
        .then(a.0.cmp(&b.0))
}

/// Most names each of [`Summary::dns_names`], [`Summary::tls_snis`] and
/// [`Summary::http_hosts`] keeps (random subdomains would otherwise grow them without bound).
pub const NAMES_CAP: usize = 10_000;

/// Biggest first: packets desc, then key asc.
fn count_order<K: Ord>(a: &(K, u64), b: &(K, u64)) -> Ordering {
    b.1.cmp(&a.1).then(a.0.cmp(&b.0))
}

/// The first `n` of `v` under `order`, sorted; a partial selection first so that a large
/// map costs O(len) rather than a full sort.
fn top_n<T>(mut v: Vec<T>, n: usize, order: impl Fn(&T, &T) -> Ordering) -> Vec<T> {
    if n < v.len() {
        if n == 0 {
            return Vec::new();
        }
        v.select_nth_unstable_by(n - 1, &order);
        v.truncate(n);
    }
    v.sort_unstable_by(order);
    v
}

/// The keys of [`Summary::network`], in [`Counter`]'s array order.
const NETWORK: [&str; 5] = ["ipv4", "ipv6", "arp", "other", "none"];

/// A summary's maps keyed by the names pcaplab gives (network protocols, encapsulations),
/// read back: every name must be one of them.
mod names {
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use serde::de::{Deserializer, Error};

    use super::{Encap, NETWORK};

    fn known<'de, D: Deserializer<'de>>(
        d: D,
        names: impl Iterator<Item = &'static str> + Clone,
    ) -> Result<BTreeMap<&'static str, u64>, D::Error> {
        BTreeMap::<String, u64>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| match names.clone().find(|n| *n == k) {
                Some(n) => Ok((n, v)),
                None => Err(D::Error::custom(format!("unknown name {k:?}"))),
            })
            .collect()
    }

    pub(super) fn network<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<&'static str, u64>, D::Error> {
        known(d, NETWORK.into_iter())
    }

    pub(super) fn tunnels<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<&'static str, u64>, D::Error> {
        known(d, Encap::ALL.into_iter().map(Encap::name))
    }
}

/// How much of a [`Summary`] a conversion counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Counts {
    /// Everything the summary item holds.
    #[default]
    All,
    /// The totals only, when no output holds the rest (no summary item is written): packets,
    /// bytes, first and last timestamps, link types, network and IP protocols, tunnels, decode
    /// errors, fragments and QUIC Initials are counted; the talkers, ports, names and timeline
    /// stay empty. Those are the summary's cost per packet (each address pair and name
    /// looked up, each port counted): measured, 11% of the CPU of small-packet TCP and 23% of
    /// DNS-heavy traffic converted to Parquet (`benches/speed.sh`).
    Totals,
}

impl Counts {
    /// [`Counts::All`] when a summary item is written, else [`Counts::Totals`].
    pub fn for_item(item: bool) -> Counts {
        if item { Counts::All } else { Counts::Totals }
    }
}

/// Counts one chunk's packets — in flat arrays where the key space is small (link types,
/// protocols, ports), in a hash map for addresses — and becomes a [`Summary`] once, at the
/// end of the chunk.
pub(crate) struct Counter {
    summary: Summary,
    /// [`Counts::All`]: the talkers, ports, names and timeline are counted too.
    all: bool,
    /// (link type, packets); a chunk rarely has more than one or two.
    link_types: Vec<(u16, u64)>,
    network: [u64; NETWORK.len()],
    ip_protos: [u64; 256],
    /// Hashed per chunk, moved into the summary once in `finish`.
    talkers: ChunkTalkers,
    /// Packets per port, indexed by port; allocated at the chunk's first port. u32 is
    /// enough: a chunk holds fewer than 2^28 frames (chunk bytes < 2^32, 16-byte headers).
    ports: Vec<u32>,
    /// The latest packets' two addresses (either way round, or one address talking to
    /// itself) and their traffic, not yet in `talkers`: a conversation's packets mostly come
    /// one after another, and each is then counted without hashing either address.
    pair: Option<(Addr, Addr, Traffic)>,
    /// The chunk's timeline with its latest bucket held apart: frames mostly come in time
    /// order, so most packets add to this one bucket instead of a map entry.
    timeline: TimelineRun,
    /// Packets per encapsulation, indexed by `Encap as usize`.
    tunnels: [u64; Encap::ALL.len() + 1],
}

/// A chunk's talkers while it is counted: IPv4 addresses (most of any capture's, and every one
/// of a spoofed flood's) in 16-byte entries, the others by [`Addr`]. A flood's chunk brings a
/// new address with nearly every packet, each stored at a random place in the table, which in
/// 16-byte entries takes 2/5 of the cache that `(Addr, Traffic)` entries (40 bytes) took.
#[derive(Default)]
struct ChunkTalkers {
    v4: HashTable<V4Talker>,
    other: FxHashMap<Addr, Traffic>,
}

/// An IPv4 talker of a chunk. u32 packets are enough: a chunk holds fewer than 2^28 frames.
#[derive(Clone, Copy)]
struct V4Talker {
    addr: u32,
    packets: u32,
    bytes: u64,
}

impl ChunkTalkers {
    fn with_capacity(v4: usize) -> Self {
        ChunkTalkers {
            v4: HashTable::with_capacity(v4),
            other: FxHashMap::default(),
        }
    }

    fn add(&mut self, a: Addr, t: Traffic) {
        let Addr::V4(octets) = a else {
            self.other.entry(a).or_default().add(t);
            return;
        };
        let addr = u32::from_be_bytes(octets);
        let hash = |e: &V4Talker| FxBuildHasher.hash_one(e.addr);
        match self
            .v4
            .entry(FxBuildHasher.hash_one(addr), |e| e.addr == addr, hash)
        {
            Entry::Occupied(mut e) => {
                let e = e.get_mut();
                e.packets += t.packets as u32;
                e.bytes += t.bytes;
            }
            Entry::Vacant(e) => {
                e.insert(V4Talker {
                    addr,
                    packets: t.packets as u32,
                    bytes: t.bytes,
                });
            }
        }
    }

    /// Count `t` for both addresses of a pair (once if they are the same).
    fn add_pair(&mut self, a: Addr, b: Addr, t: Traffic) {
        self.add(a, t);
        if b != a {
            self.add(b, t);
        }
    }

    /// The talkers as a summary keeps them, and whether they had to be pruned (only a chunk
    /// of more than [`TALKERS_CAP`] addresses is: to the biggest half, as [`Summary::merge`]
    /// prunes).
    fn into_summary(self) -> (FxHashMap<Addr, Traffic>, bool) {
        let len = self.v4.len() + self.other.len();
        let all = self
            .v4
            .into_iter()
            .map(|e| {
                let t = Traffic {
                    packets: u64::from(e.packets),
                    bytes: e.bytes,
                };
                (Addr::V4(e.addr.to_be_bytes()), t)
            })
            .chain(self.other);
        if len <= TALKERS_CAP {
            return (all.collect(), false);
        }
        (biggest_half(all.collect()).into_iter().collect(), true)
    }
}

/// The biggest [`TALKERS_CAP`] / 2 of `talkers`, in no order.
fn biggest_half(mut talkers: Vec<(Addr, Traffic)>) -> Vec<(Addr, Traffic)> {
    let keep = TALKERS_CAP / 2;
    if talkers.len() > keep {
        talkers.select_nth_unstable_by(keep - 1, talker_order);
        talkers.truncate(keep);
    }
    talkers
}

/// Count one name (clipped to DNS's 253-byte limit, on a char boundary).
fn count_name(map: &mut BTreeMap<String, u64>, name: &str) {
    let mut end = name.len().min(253);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let name = &name[..end];
    match map.get_mut(name) {
        Some(n) => *n += 1,
        None => {
            map.insert(name.to_owned(), 1);
        }
    }
}

/// Keep the biggest half of `map` once it holds more than `cap` entries; true if pruned.
fn prune_counts(map: &mut BTreeMap<String, u64>, cap: usize) -> bool {
    if map.len() <= cap {
        return false;
    }
    let all = std::mem::take(map).into_iter().collect();
    *map = top_n(all, cap / 2, count_order).into_iter().collect();
    true
}

/// A [`Timeline`] plus a run of packets in one bucket not yet added to it.
#[derive(Default)]
struct TimelineRun {
    timeline: Timeline,
    /// (bucket index at the timeline's current width, traffic).
    run: Option<(i64, Traffic)>,
}

impl TimelineRun {
    fn add(&mut self, ts_ns: i64, t: Traffic) {
        let idx = ts_ns.div_euclid(self.timeline.bucket_ns());
        match &mut self.run {
            Some((i, run)) if *i == idx => run.add(t),
            _ => {
                // Flushing may widen the buckets: index the new run at the width after it.
                self.flush();
                let idx = ts_ns.div_euclid(self.timeline.bucket_ns());
                self.run = Some((idx, t));
            }
        }
    }

    fn flush(&mut self) {
        if let Some((idx, t)) = self.run.take() {
            // The index was taken at the current width, which only `Timeline::add` widens.
            let ts = idx.saturating_mul(self.timeline.bucket_ns());
            self.timeline.add(ts, t);
        }
    }

    fn finish(mut self) -> Timeline {
        self.flush();
        self.timeline
    }
}

thread_local! {
    /// IPv4 addresses of the last chunk this thread counted: the next chunk's map starts at that
    /// size, so that a scan's does not grow a dozen times per chunk.
    static LAST_TALKERS: Cell<usize> = const { Cell::new(0) };
}

impl Counter {
    pub(crate) fn new(counts: Counts) -> Self {
        let all = counts == Counts::All;
        // Only the totals: no talkers, and no map for them.
        let talkers = if all { LAST_TALKERS.with(Cell::get) } else { 0 };
        Counter {
            summary: Summary::default(),
            all,
            link_types: Vec::new(),
            network: [0; NETWORK.len()],
            ip_protos: [0; 256],
            talkers: ChunkTalkers::with_capacity(talkers),
            ports: Vec::new(),
            pair: None,
            timeline: TimelineRun::default(),
            tunnels: [0; Encap::ALL.len() + 1],
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
        if f.ts_ns != NO_TIMESTAMP && self.all {
            self.timeline.add(
                f.ts_ns,
                Traffic {
                    packets: 1,
                    bytes: u64::from(f.wire_len),
                },
            );
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
        if let (Some(ip), true) = (p.ip, self.all) {
            let t = Traffic {
                packets: 1,
                bytes: u64::from(f.wire_len),
            };
            match &mut self.pair {
                Some((a, b, run))
                    if (*a == ip.src && *b == ip.dst) || (*a == ip.dst && *b == ip.src) =>
                {
                    run.add(t);
                }
                pair => {
                    if let Some((a, b, run)) = pair.replace((ip.src, ip.dst, t)) {
                        self.talkers.add_pair(a, b, run);
                    }
                }
            }
        }
        for e in p.env.layers() {
            self.tunnels[*e as usize] += 1;
        }
        if self.all && (p.src_port.is_some() || p.dst_port.is_some()) {
            if self.ports.is_empty() {
                self.ports = vec![0; 1 << 16];
            }
            if let Some(port) = p.src_port {
                self.ports[usize::from(port)] += 1;
            }
            if let Some(port) = p.dst_port.filter(|d| Some(*d) != p.src_port) {
                self.ports[usize::from(port)] += 1;
            }
        }
        if p.error.is_some() || f.cut_short {
            s.decode_errors += 1;
        }
    }

    /// Count a packet's application fields: DNS queries (not responses) by name, ClientHellos
    /// by SNI, HTTP requests by Host.
    pub(crate) fn add_app(&mut self, app: &AppFields) {
        if !self.all {
            return;
        }
        let s = &mut self.summary;
        if let (Some(name), None) = (&app.dns_qname, app.dns_rcode) {
            count_name(&mut s.dns_names, name);
        }
        if let Some(sni) = &app.tls_sni {
            count_name(&mut s.tls_snis, sni);
        }
        if let Some(host) = &app.http_host {
            count_name(&mut s.http_hosts, host);
        }
    }

    /// The chunk's QUIC Initial counts.
    pub(crate) fn add_quic(&mut self, stats: &crate::app::quic::InitialStats) {
        self.summary.quic_initials += stats.decrypted;
        self.summary.quic_undecryptable += stats.undecryptable;
    }

    /// The chunk's reassembly counts.
    pub(crate) fn fragments(&mut self, stats: &FragStats) {
        self.summary.fragments.add(stats);
    }

    pub(crate) fn finish(mut self) -> Summary {
        let mut s = self.summary;
        s.link_types.extend(self.link_types);
        s.tunnels.extend(
            Encap::ALL
                .into_iter()
                .map(|e| (e.name(), self.tunnels[e as usize]))
                .filter(|(_, n)| *n > 0),
        );
        s.network.extend(
            NETWORK
                .into_iter()
                .zip(self.network)
                .filter(|(_, n)| *n > 0),
        );
        s.ip_protos
            .extend((0..=u8::MAX).zip(self.ip_protos).filter(|(_, n)| *n > 0));
        if let Some((a, b, run)) = self.pair {
            self.talkers.add_pair(a, b, run);
        }
        if self.all {
            LAST_TALKERS.with(|n| n.set(self.talkers.v4.len()));
        }
        (s.talkers, s.talkers_truncated) = self.talkers.into_summary();
        s.ports = PortCounts::of_chunk(&self.ports);
        s.timeline = self.timeline.finish();
        s.prune_names();
        s
    }
}

impl Summary {
    /// Fold a later chunk's statistics into these.
    ///
    /// Without pruning the result does not depend on how the capture was chunked. When the
    /// talkers exceed [`TALKERS_CAP`], the smallest are dropped down to half the cap (ties:
    /// the higher address goes) and `talkers_truncated` is set; an address pruned once and
    /// seen again restarts from zero, so only the never-pruned counts stay exact.
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
        for (k, v) in &other.tunnels {
            *self.tunnels.entry(k).or_default() += v;
        }
        self.fragments.add(&other.fragments);
        for (k, v) in &other.ip_protos {
            *self.ip_protos.entry(*k).or_default() += v;
        }
        self.decode_errors += other.decode_errors;
        self.quic_initials += other.quic_initials;
        self.quic_undecryptable += other.quic_undecryptable;
        self.merge_talkers(&other.talkers);
        self.talkers_truncated |= other.talkers_truncated;
        self.ports.merge(&other.ports);
        self.timeline.merge(&other.timeline);
        for (mine, theirs) in [
            (&mut self.dns_names, &other.dns_names),
            (&mut self.tls_snis, &other.tls_snis),
            (&mut self.http_hosts, &other.http_hosts),
        ] {
            for (k, v) in theirs {
                match mine.get_mut(k) {
                    Some(n) => *n += v,
                    None => {
                        mine.insert(k.clone(), *v);
                    }
                }
            }
        }
        self.names_truncated |= other.names_truncated;
        self.prune_names();
    }

    fn prune_names(&mut self) {
        for map in [
            &mut self.dns_names,
            &mut self.tls_snis,
            &mut self.http_hosts,
        ] {
            if prune_counts(map, NAMES_CAP) {
                self.names_truncated = true;
            }
        }
    }

    /// The `n` names of `map` with the most counts (then alphabetical).
    pub fn top_names(map: &BTreeMap<String, u64>, n: usize) -> Vec<(&str, u64)> {
        let all = map.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        top_n(all, n, count_order)
    }

    /// Add `other`'s talkers. Addresses already counted add up in place; the new ones go in
    /// through [`Summary::add_new_talkers`], which drops at once those a prune would drop
    /// without inserting them first (a chunk of a scan brings thousands, merged on the writer
    /// thread).
    fn merge_talkers(&mut self, other: &FxHashMap<Addr, Traffic>) {
        let mut new = Vec::with_capacity(other.len());
        for (a, t) in other {
            match self.talkers.get_mut(a) {
                Some(mine) => mine.add(*t),
                None => new.push((*a, *t)),
            }
        }
        self.add_new_talkers(new);
    }

    /// Insert `new` (addresses not in the map) if the map then stays within [`TALKERS_CAP`];
    /// otherwise the talkers become the biggest [`TALKERS_CAP`] / 2 of old and new together —
    /// those that inserting them all and pruning would keep. In place: the map keeps its
    /// capacity for the next chunks of a scan.
    fn add_new_talkers(&mut self, mut new: Vec<(Addr, Traffic)>) {
        if self.talkers.len() + new.len() <= TALKERS_CAP {
            self.talkers.extend(new);
            return;
        }
        new.extend(self.talker_list());
        self.talkers.clear();
        self.talkers.extend(biggest_half(new));
        self.talkers_truncated = true;
    }

    /// Every talker, in the map's order.
    fn talker_list(&self) -> impl Iterator<Item = (Addr, Traffic)> + '_ {
        self.talkers.iter().map(|(a, t)| (*a, *t))
    }

    /// The `n` addresses with the most packets (then bytes, then lowest address first).
    pub fn top_talkers(&self, n: usize) -> Vec<(Addr, Traffic)> {
        let all = self.talker_list().collect();
        top_n(all, n, talker_order)
    }

    /// The `n` ports with the most packets (then lowest port first).
    pub fn top_ports(&self, n: usize) -> Vec<(u16, u64)> {
        top_n(self.ports.iter().collect(), n, count_order)
    }
}

/// Bytes for people: `512 B`, `1.5 KiB`, `3.2 GiB` (binary units, one decimal).
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dissect::Ip;

    fn frame(ts_ns: i64, wire_len: u32) -> FrameMeta {
        FrameMeta {
            start: 0,
            cap_len: wire_len.min(64),
            wire_len,
            ts_ns,
            interface_id: 0,
            link_type: 1,
            cut_short: false,
            claimed_len: wire_len.min(64),
        }
    }

    fn packet(src: Addr, dst: Addr, ports: Option<(u16, u16)>) -> Packet {
        let ip = Ip {
            version: if matches!(src, Addr::V4(_)) { 4 } else { 6 },
            src,
            dst,
            proto: 6,
            len: 40,
            ttl: 64,
            frag_offset: 0,
            more_fragments: false,
        };
        Packet {
            ethertype: Some(0x0800),
            ip: Some(ip),
            src_port: ports.map(|p| p.0),
            dst_port: ports.map(|p| p.1),
            ..Packet::default()
        }
    }

    fn v4(last: u8) -> Addr {
        Addr::V4([10, 0, 0, last])
    }

    fn sample() -> Vec<(FrameMeta, Packet)> {
        let mut v = Vec::new();
        for i in 0..40u32 {
            let src = v4((i % 7) as u8);
            let dst = v4((i % 3) as u8);
            let ports = (i % 5 != 0).then_some((1000 + (i % 4) as u16, 80));
            v.push((frame(i64::from(i) * 1000, 60 + i), packet(src, dst, ports)));
        }
        // No IP header, and a port carried twice.
        v.push((frame(7, 42), Packet::default()));
        v.push((frame(8, 90), packet(v4(9), v4(9), Some((53, 53)))));
        v
    }

    fn count(frames: &[(FrameMeta, Packet)]) -> Summary {
        let mut c = Counter::new(Counts::All);
        for (f, p) in frames {
            c.add(f, p);
        }
        c.finish()
    }

    #[test]
    fn a_conversation_counts_for_both_addresses_whichever_way_it_goes() {
        let (a, b, c) = (v4(1), v4(2), v4(3));
        let pairs = [(a, b), (b, a), (a, b), (c, a), (a, a), (a, a), (b, c)];
        let frames: Vec<_> = pairs
            .iter()
            .enumerate()
            .map(|(i, (s, d))| (frame(i as i64, 100 + i as u32), packet(*s, *d, None)))
            .collect();
        let s = count(&frames);
        let got = |x: Addr| s.talkers.get(&x).map(|t| (t.packets, t.bytes));
        assert_eq!(got(a), Some((6, 100 + 101 + 102 + 103 + 104 + 105)));
        assert_eq!(got(b), Some((4, 100 + 101 + 102 + 106)));
        assert_eq!(got(c), Some((2, 103 + 106)));
    }

    #[test]
    fn port_counts_read_back_as_a_map_of_the_ports_seen() {
        let mut p = PortCounts::default();
        assert_eq!(p, PortCounts::default());
        p.add(443, 2);
        p.add(53, 1);
        p.add(443, 1);
        assert_eq!(p.iter().collect::<Vec<_>>(), [(53, 1), (443, 3)]);
        assert_eq!((p.get(443), p.get(80)), (Some(3), None));
        let json = serde_json::to_string(&p).expect("json");
        assert_eq!(json, r#"{"53":1,"443":3}"#);
        let back: PortCounts = serde_json::from_str(&json).expect("read back");
        assert_eq!(back, p);
        // Counters allocated but all zero equal none allocated.
        let mut zero = PortCounts::default();
        zero.merge(&PortCounts {
            seen: Vec::new(),
            all: vec![0; 1 << 16],
        });
        assert_eq!(zero, PortCounts::default());
        // A chunk's counts and a total's read the same.
        let mut counts = vec![0u32; 1 << 16];
        counts[53] = 1;
        counts[443] = 3;
        let chunk = PortCounts::of_chunk(&counts);
        assert_eq!(chunk, p);
        assert_eq!((chunk.get(443), chunk.get(80)), (Some(3), None));
        let mut total = PortCounts::default();
        total.merge(&chunk);
        total.merge(&chunk);
        assert_eq!(total.iter().collect::<Vec<_>>(), [(53, 2), (443, 6)]);
    }

    #[test]
    fn merge_equals_counting_at_once() {
        let all = sample();
        let whole = count(&all);
        for cut in [0, 1, 17, all.len()] {
            let mut merged = count(&all[..cut]);
            merged.merge(&count(&all[cut..]));
            assert_eq!(merged, whole, "cut at {cut}");
        }
        assert!(!whole.talkers_truncated);
        // src == dst counts once, as does a port carried twice.
        let t9 = whole.talkers.get(&v4(9)).expect("talker");
        assert_eq!((t9.packets, t9.bytes), (1, 90));
        assert_eq!(whole.ports.get(53), Some(1));
        assert_eq!(whole.ports.get(80), Some(32));
        let talked: u64 = whole.talkers.values().map(|t| t.packets).sum();
        let self_talk = all
            .iter()
            .filter_map(|(_, p)| p.ip)
            .filter(|ip| ip.src == ip.dst)
            .count() as u64;
        assert_eq!(talked, 2 * 41 - self_talk);
    }

    #[test]
    fn timeline_is_chunking_independent_and_bounded() {
        // Out-of-order and negative timestamps, empty stretches, and a span that forces
        // several widenings (about 37 s at 1 ms buckets).
        let mut frames: Vec<(FrameMeta, Packet)> = Vec::new();
        let mut ts: i64 = -3_000_000_000;
        for i in 0..400_i64 {
            ts += (i * 7919) % 250_000_000;
            let back = if i % 13 == 0 { 40_000_000 } else { 0 };
            frames.push((frame(ts - back, 60 + (i % 5) as u32), Packet::default()));
        }
        let whole = count(&frames);
        let (start, series) = whole.timeline.dense().expect("timestamps");
        assert!(series.len() <= TIMELINE_BUCKETS, "{}", series.len());
        // The narrowest width that fits: half of it would not.
        let w = whole.timeline.bucket_ns();
        let (lo, hi) = (whole.first_ts.expect("ts"), whole.last_ts.expect("ts"));
        assert!(hi.div_euclid(w / 2) - lo.div_euclid(w / 2) + 1 > TIMELINE_BUCKETS as i64);
        assert_eq!(start, lo.div_euclid(w) * w);
        assert!(start <= lo && hi < start + w * series.len() as i64);
        assert_eq!(series.iter().map(|t| t.packets).sum::<u64>(), 400);
        assert_eq!(
            series.iter().map(|t| t.bytes).sum::<u64>(),
            whole.wire_bytes
        );
        for cuts in [vec![1], vec![50, 51, 300], vec![17, 200, 399]] {
            let mut merged = Summary::default();
            let mut from = 0;
            for cut in cuts.into_iter().chain([frames.len()]) {
                merged.merge(&count(&frames[from..cut]));
                from = cut;
            }
            assert_eq!(merged.timeline, whole.timeline);
        }
        // Frames without a timestamp are not placed; a capture without any has no timeline.
        let none = count(&[(frame(NO_TIMESTAMP, 60), Packet::default())]);
        assert_eq!(none.timeline.dense(), None);
        // The extremes of i64 fit in the widest bucket without overflow.
        let wide = count(&[
            (frame(i64::MIN + 1, 60), Packet::default()),
            (frame(i64::MAX, 60), Packet::default()),
        ]);
        let (_, series) = wide.timeline.dense().expect("timestamps");
        assert!(series.len() <= TIMELINE_BUCKETS);
    }

    /// The model the talker tests check against: every talker ranked, the biggest half kept
    /// (where the code selects that half without sorting).
    fn biggest_half_by_sorting(talkers: FxHashMap<Addr, Traffic>) -> Vec<(Addr, Traffic)> {
        let mut ranked: Vec<(Addr, Traffic)> = talkers.into_iter().collect();
        ranked.sort_unstable_by(talker_order);
        ranked.truncate(TALKERS_CAP / 2);
        ranked
    }

    #[test]
    fn a_chunk_of_more_addresses_than_the_cap_keeps_its_biggest_half() {
        // A scan's chunk: IPv4 and IPv6 sources (the two kinds a chunk counts apart), some
        // of them several times, each sending to one IPv6 and one IPv4 victim.
        let v6 = |i: u32| {
            let mut b = [0u8; 16];
            b[0] = 0x20;
            b[12..].copy_from_slice(&i.to_be_bytes());
            Addr::V6(b)
        };
        let victims = [Addr::V4([192, 0, 2, 1]), v6(0xFFFF)];
        let mut frames = Vec::new();
        for i in 0..(TALKERS_CAP as u32 + 3_000) {
            let src = if i % 3 == 0 {
                v6(i)
            } else {
                Addr::V4((0x0A00_0000 + i).to_be_bytes())
            };
            for k in 0..=(i % 4 / 3) {
                let dst = victims[(i as usize + k as usize) % 2];
                frames.push((frame(0, 60 + i % 50), packet(src, dst, None)));
            }
        }
        // Every address counted in one map, then ranked: the biggest half is what stays.
        let mut all: FxHashMap<Addr, Traffic> = FxHashMap::default();
        for (f, p) in &frames {
            let ip = p.ip.expect("an IP packet");
            for a in [ip.src, ip.dst] {
                all.entry(a).or_default().add(Traffic {
                    packets: 1,
                    bytes: u64::from(f.wire_len),
                });
            }
        }
        let ranked = biggest_half_by_sorting(all);
        let s = count(&frames);
        assert!(s.talkers_truncated);
        let mut kept: Vec<(Addr, Traffic)> = s.talkers.into_iter().collect();
        kept.sort_unstable_by(talker_order);
        assert_eq!(kept, ranked);
        assert!(kept.iter().any(|(a, _)| matches!(a, Addr::V4(_))));
        assert!(kept.iter().any(|(a, _)| matches!(a, Addr::V6(_))));
    }

    #[test]
    fn pruning_keeps_the_biggest() {
        let mut s = Summary::default();
        let big = Addr::V6([0xff; 16]);
        s.talkers.insert(
            big,
            Traffic {
                packets: 5,
                bytes: 500,
            },
        );
        let mut other = Summary::default();
        for i in 0..TALKERS_CAP as u32 {
            let t = Traffic {
                packets: 1 + u64::from(i % 2),
                bytes: 100,
            };
            other.talkers.insert(Addr::V4(i.to_be_bytes()), t);
        }
        s.merge(&other);
        assert!(s.talkers_truncated);
        assert_eq!(s.talkers.len(), TALKERS_CAP / 2);
        assert_eq!(s.talkers.get(&big).map(|t| t.packets), Some(5));
        // Every survivor has 2 packets except the big one: the 1-packet ones went first.
        assert!(s.talkers.values().all(|t| t.packets >= 2));
        // Ties go by address: the lowest 2-packet addresses survive.
        assert!(s.talkers.contains_key(&Addr::V4(1u32.to_be_bytes())));
        assert!(!s.talkers.contains_key(&Addr::V4(65_535u32.to_be_bytes())));
        // The flag survives further merges.
        let mut later = Summary::default();
        later.merge(&s);
        assert!(later.talkers_truncated);
    }

    /// Merging chunk by chunk keeps exactly the talkers that adding every address and then
    /// pruning to the biggest half keeps: chunks of a scan drawn from an address space bigger
    /// than the cap, overlapping one another, with counts that tie and differ.
    #[test]
    fn merging_talkers_keeps_what_adding_all_then_pruning_keeps() {
        fn model(mine: &mut FxHashMap<Addr, Traffic>, other: &FxHashMap<Addr, Traffic>) {
            for (a, t) in other {
                mine.entry(*a).or_default().add(*t);
            }
            if mine.len() > TALKERS_CAP {
                *mine = biggest_half_by_sorting(std::mem::take(mine))
                    .into_iter()
                    .collect();
            }
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut merged = Summary::default();
        let mut expected: FxHashMap<Addr, Traffic> = FxHashMap::default();
        for (chunk, size) in [300, 9_000, 12_000, 100, 15_000, 7_000]
            .into_iter()
            .enumerate()
        {
            let mut other = Summary::default();
            for _ in 0..size {
                let a = Addr::V4((next(40_000) as u32).to_be_bytes());
                let packets = 1 + next(3);
                other.talkers.entry(a).or_default().add(Traffic {
                    packets,
                    bytes: packets * 60 + next(2) * 40,
                });
            }
            merged.merge(&other);
            model(&mut expected, &other.talkers);
            assert_eq!(merged.talkers, expected, "after chunk {chunk}");
            assert_eq!(merged.talkers_truncated, chunk >= 2, "after chunk {chunk}");
        }
    }

    #[test]
    fn names_count_queries_and_merge_and_prune() {
        let mut c = Counter::new(Counts::All);
        let mut query = AppFields::default();
        query.dns_qname = Some("example.com".into());
        query.dns_qtype = Some(1);
        let mut response = query.clone();
        response.dns_rcode = Some(0);
        let mut hello = AppFields::default();
        hello.tls_sni = Some("é".repeat(200));
        for app in [&query, &query, &response, &hello] {
            c.add_app(app);
        }
        let mut s = c.finish();
        // Responses are not counted; names are clipped to 253 bytes on a char boundary.
        assert_eq!(s.dns_names.get("example.com"), Some(&2));
        let clipped = "é".repeat(126);
        assert_eq!(s.tls_snis.get(&clipped), Some(&1));
        let mut other = Summary::default();
        for i in 0..NAMES_CAP as u32 {
            other.dns_names.insert(format!("n{i:05}.example"), 1);
        }
        s.merge(&other);
        assert!(s.names_truncated);
        assert_eq!(s.dns_names.len(), NAMES_CAP / 2);
        assert_eq!(s.dns_names.get("example.com"), Some(&2));
        assert_eq!(
            Summary::top_names(&s.dns_names, 2),
            [("example.com", 2), ("n00000.example", 1)]
        );
        assert_eq!(s.tls_snis.len(), 1);
    }

    #[test]
    fn top_n_ordering() {
        let mut s = Summary::default();
        let t = |packets, bytes| Traffic { packets, bytes };
        s.talkers.insert(v4(1), t(3, 100));
        s.talkers.insert(v4(2), t(5, 10));
        s.talkers.insert(v4(3), t(3, 200));
        s.talkers.insert(v4(0), t(3, 100));
        s.talkers.insert(Addr::V6([0; 16]), t(1, 1));
        assert_eq!(
            s.top_talkers(4),
            vec![
                (v4(2), t(5, 10)),
                (v4(3), t(3, 200)),
                (v4(0), t(3, 100)),
                (v4(1), t(3, 100)),
            ]
        );
        assert_eq!(s.top_talkers(10).len(), 5);
        assert!(s.top_talkers(0).is_empty());
        s.ports.extend([(443, 7), (80, 7), (22, 1), (53, 9)]);
        assert_eq!(s.top_ports(3), vec![(53, 9), (80, 7), (443, 7)]);
        assert_eq!(s.top_ports(100).len(), 4);
    }

    #[test]
    fn addr_display() {
        assert_eq!(Addr::V4([192, 168, 0, 1]).to_string(), "192.168.0.1");
        let v6 = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(Addr::V6(v6).to_string(), "2001:db8::1");
    }
}
