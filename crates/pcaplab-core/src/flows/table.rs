//! The live flows of one capture, within a memory budget, on every core.
//!
//! The table is split into [`SHARDS`] shards by a hash of the flow key; each chunk's segments
//! are split the same way on the worker that folded them ([`ChunkFlows::into_shards`]), and the
//! shards merge their parts in parallel. A key lives in one shard only, so the shards never
//! need each other, and since the shard count does not depend on the number of threads, the
//! flows written do not either.
//!
//! Memory is bounded like a flow meter's (Suricata's memcap): each shard's hash table may hold
//! at most [`Budget::max_live`] flows, a number chosen so that the table, at its largest, fits
//! its share of [`FlowConfig::max_bytes`], and the bytes the flows hold outside the table
//! (server names, tunnel envelopes) have a share of their own. When a new flow would pass
//! either, a quarter of the shard's flows are evicted — TCP connections already closed first
//! (nothing is lost but a late ACK), then single-packet flows (scans, floods, S0 attempts that
//! will never complete), then the rest, each least recently seen first — and written with
//! [`EndReason::Evicted`], so nothing is silently lost: a later packet of an evicted flow starts
//! a new row.

use std::cmp::Ordering;
use std::hash::BuildHasher;
use std::mem::size_of;

use hashbrown::HashTable;
use rayon::prelude::*;
use rustc_hash::FxBuildHasher;

use super::{EndReason, Flow, FlowConfig, FlowKey, KeyedSegment, Segment, ShardedFlows};
use crate::app::Services;
use crate::columns::Rows;
use crate::dissect::Envelope;
use crate::reader::NO_TIMESTAMP;

/// Shards of the live table. Fixed, not the thread count, so that the flows written (which
/// eviction makes depend on each shard's size) do not depend on `--jobs`.
pub const SHARDS: usize = 8;

/// A flow key's hash: computed once for a chunk's new segment ([`ChunkFlows`]), and kept with
/// the flow in its shard's table, which never hashes a key again (not even to grow).
pub(super) fn key_hash(key: &FlowKey) -> u64 {
    FxBuildHasher.hash_one(key)
}

/// The shard of a key with hash `hash`: from the hash's middle bits (the table indexes its
/// buckets with the low ones and tags them with the top seven).
pub(super) fn shard_of(hash: u64) -> usize {
    (hash >> 40) as usize % SHARDS
}

/// Flow totals and the biggest flows, for the summary item.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlowStats {
    /// The seed of the flows' Community IDs.
    pub community_id_seed: u16,
    pub flows: u64,
    /// Flows written early because the live flows reached the memory budget.
    pub evicted: u64,
    /// The [`TOP_FLOWS`] flows with the most bytes, biggest first.
    pub top: Vec<Flow>,
    /// Flows per service (a flow of several services counts in each), in
    /// [`Services::ALL`]'s order.
    pub services: [u64; Services::ALL.len()],
}

/// How many of the biggest flows [`FlowStats`] keeps.
pub const TOP_FLOWS: usize = 100;

/// Biggest first: bytes, then packets, then earliest first frame.
fn flow_order(a: &Flow, b: &Flow) -> Ordering {
    b.bytes()
        .cmp(&a.bytes())
        .then(b.packets().cmp(&a.packets()))
        .then(a.seg.first_frame.cmp(&b.seg.first_frame))
}

/// A live flow in its shard's table: the key's hash, the key, the segment.
type Live = (u64, FlowKey, Segment);

/// Bytes one live flow takes in a hash table: the entry and the table's control byte.
const ENTRY_BYTES: usize = size_of::<Live>() + 1;

/// The entry of `key`, whose hash is `hash`.
fn is(hash: u64, key: &FlowKey) -> impl Fn(&Live) -> bool + '_ {
    move |(h, k, _)| *h == hash && k == key
}

/// The table's hasher: the hash kept in the entry.
fn kept_hash((h, _, _): &Live) -> u64 {
    *h
}

/// What the budget allows each shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Most flows live in a shard.
    pub max_live: usize,
    /// Most bytes a shard's flows may hold outside its table.
    pub max_heap: usize,
}

impl Budget {
    /// Split `max_bytes` over the shards. A hash table (hashbrown) has a power-of-two number of
    /// buckets, up to 7/8 of them in use, and grows to twice its size when it must insert
    /// while more than half full with no free bucket left (removals leave tombstones). So a
    /// table that never holds more than half its usable capacity — 7/16 of its buckets — never
    /// grows past that many buckets. The tables get the largest such size within 7/8 of the
    /// budget; what is left of it is for names and envelopes.
    pub fn of(max_bytes: usize) -> Budget {
        let table = max_bytes / 8 * 7;
        let mut buckets = 16 * SHARDS;
        while buckets * 2 * ENTRY_BYTES <= table {
            buckets *= 2;
        }
        let per_shard = buckets / SHARDS;
        Budget {
            max_live: per_shard * 7 / 16,
            max_heap: max_bytes.saturating_sub(buckets * ENTRY_BYTES) / SHARDS,
        }
    }

    /// Most flows live at once in the whole table.
    pub fn max_flows(&self) -> usize {
        self.max_live * SHARDS
    }
}

/// Bytes a live flow holds outside its table entry.
fn heap_of(seg: &Segment) -> usize {
    seg.server_name.as_ref().map_or(0, |n| n.len())
        + seg.envelope.as_ref().map_or(0, |_| size_of::<Envelope>())
}

/// Eviction order, lowest first: closed TCP connections, then flows of one packet, then the
/// rest; within each, the least recently seen.
fn eviction_rank(seg: &Segment) -> u64 {
    let class: u64 = if seg.closed() {
        0
    } else if seg.packets() == 1 {
        1
    } else {
        2
    };
    class << 62 | seg.last_frame.min((1 << 62) - 1)
}

/// Flows the table handed on, in file order: by first frame; flows of one frame (a tunnel's
/// own flow and the flow inside it) outermost first, then by shard and position in the shard's
/// list.
///
/// Flows are big (over 200 bytes), so they are not sorted but placed: their (first frame,
/// depth, shard, position) keys are sorted, and each flow moved once, to its place. (Reading
/// them through the sorted keys where they lie instead, the rows built later gather them from
/// all over the shards' lists: measured, 5% more CPU on a flood than this one move.)
#[derive(Default)]
pub struct InFileOrder {
    flows: Vec<Flow>,
}

impl InFileOrder {
    fn new(shards: Vec<Vec<Flow>>) -> Self {
        let mut order: Vec<(u64, usize, usize, usize)> =
            Vec::with_capacity(shards.iter().map(Vec::len).sum());
        for (shard, flows) in shards.iter().enumerate() {
            order.extend(flows.iter().enumerate().map(|(i, f)| {
                let depth = f.seg.envelope.as_ref().map_or(0, |e| e.layers().len());
                (f.seg.first_frame, depth, shard, i)
            }));
        }
        order.sort_unstable();
        let mut slots: Vec<Vec<Option<Flow>>> = shards
            .into_iter()
            .map(|flows| flows.into_iter().map(Some).collect())
            .collect();
        // Sized once: the list is kept until its row groups are written.
        let mut flows = Vec::with_capacity(order.len());
        flows.extend(
            order
                .into_iter()
                .filter_map(|(_, _, shard, i)| slots[shard][i].take()),
        );
        InFileOrder { flows }
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// The flows at positions `range` of the file order.
    pub fn range(&self, range: std::ops::Range<usize>) -> std::slice::Iter<'_, Flow> {
        self.flows[range].iter()
    }

    /// Every flow, in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, Flow> {
        self.flows.iter()
    }

    /// The flows themselves, in file order.
    #[cfg(test)]
    pub(crate) fn into_vec(self) -> Vec<Flow> {
        self.flows
    }
}

/// The flows a shard has let go of, and its totals.
#[derive(Default)]
struct Retired {
    /// Retired since the table last handed them on (none kept when the table only counts).
    flows: Vec<Flow>,
    /// Only the totals and the top flows are wanted ([`Rows::Skip`]).
    count_only: bool,
    count: u64,
    evicted: u64,
    services: [u64; Services::ALL.len()],
    top: Vec<Flow>,
}

impl Retired {
    fn retire(&mut self, key: FlowKey, seg: Segment, why: EndReason) {
        // A closed connection ended by its close, whenever its state is let go of.
        let end = match why {
            EndReason::Idle | EndReason::EndOfCapture if seg.closed() => EndReason::TcpClose,
            why => why,
        };
        let flow = Flow { key, seg, end };
        self.count += 1;
        if !flow.seg.services.is_empty() {
            for (n, (s, _)) in self.services.iter_mut().zip(Services::ALL) {
                *n += u64::from(flow.seg.services.contains(s));
            }
        }
        let top = &mut self.top;
        // The top flows are conversations: a tunnel's own flow repeats the bytes of the
        // flows inside it.
        if flow.seg.carries == crate::dissect::Encap::None
            && (top.len() < TOP_FLOWS || top.last().is_some_and(|l| flow_order(&flow, l).is_lt()))
        {
            let at = top
                .binary_search_by(|x| flow_order(x, &flow))
                .unwrap_or_else(|i| i);
            // Without flow rows ([`Rows::Skip`]) the flow is kept only here.
            if !self.count_only {
                self.flows.push(flow.clone());
            }
            top.insert(at, flow);
            top.truncate(TOP_FLOWS);
        } else if !self.count_only {
            self.flows.push(flow);
        }
    }
}

/// One shard of the live flows.
#[derive(Default)]
struct Shard {
    live: HashTable<Live>,
    /// Bytes the live flows hold outside the table.
    heap: usize,
    out: Retired,
    /// Scratch space for eviction ranks.
    ranks: Vec<u64>,
}

impl Shard {
    fn merge(&mut self, cfg: &FlowConfig, budget: &Budget, part: Vec<KeyedSegment>) {
        for KeyedSegment {
            hash,
            key,
            seg,
            first: may_continue,
        } in part
        {
            if let Some((_, _, live)) = self.live.find_mut(hash, is(hash, &key)) {
                self.heap -= heap_of(live);
                if may_continue && live.continues(seg.first_seen_ts, cfg.timeout(key.proto)) {
                    live.merge(seg);
                    self.heap += heap_of(live);
                } else {
                    self.heap += heap_of(&seg);
                    let done = std::mem::replace(live, seg);
                    self.out.retire(key, done, EndReason::Idle);
                }
                continue;
            }
            self.admit(budget, hash, key, seg);
        }
    }

    /// Fold in one flow of a split capture's range (see [`FlowTable::merge_part`]).
    fn merge_part(&mut self, cfg: &FlowConfig, budget: &Budget, hash: u64, flow: Flow, open: bool) {
        let Flow { key, seg, end } = flow;
        if let Some((_, _, live)) = self.live.find_mut(hash, is(hash, &key)) {
            // A flow live at the end of an earlier range, met again: this is the first flow
            // of its key in this range (a later one would have found it gone).
            self.heap -= heap_of(live);
            if live.continues(seg.first_seen_ts, cfg.timeout(key.proto)) {
                live.merge(seg);
                if open {
                    self.heap += heap_of(live);
                } else if let Some(whole) = self.remove(hash, &key) {
                    self.retire_part(key, whole, end);
                }
                return;
            }
            // Not continued: the earlier flow ended idle, and this one stands alone.
            if open {
                self.heap += heap_of(&seg);
                let earlier = std::mem::replace(live, seg);
                self.out.retire(key, earlier, EndReason::Idle);
            } else {
                if let Some(earlier) = self.remove(hash, &key) {
                    self.out.retire(key, earlier, EndReason::Idle);
                }
                self.retire_part(key, seg, end);
            }
            return;
        }
        if !open {
            self.retire_part(key, seg, end);
            return;
        }
        self.admit(budget, hash, key, seg);
    }

    /// Take the live flow of `key` (hash `hash`) out of the table.
    fn remove(&mut self, hash: u64, key: &FlowKey) -> Option<Segment> {
        let entry = self.live.find_entry(hash, is(hash, key)).ok()?;
        Some(entry.remove().0.2)
    }

    /// Make `seg` a live flow, evicting first if the shard is at its budget.
    fn admit(&mut self, budget: &Budget, hash: u64, key: FlowKey, seg: Segment) {
        let heap = heap_of(&seg);
        if self.live.len() >= budget.max_live || self.heap + heap > budget.max_heap {
            self.evict(budget.max_live.div_ceil(4));
        }
        self.heap += heap;
        self.live.insert_unique(hash, (hash, key, seg), kept_hash);
    }

    /// Retire a flow as a range's worker ended it (counting its evictions as this table's).
    fn retire_part(&mut self, key: FlowKey, seg: Segment, end: EndReason) {
        if end == EndReason::Evicted {
            self.out.evicted += 1;
        }
        self.out.retire(key, seg, end);
    }

    /// Write out (at least) `n` flows, lowest [`eviction_rank`] first.
    fn evict(&mut self, n: usize) {
        let n = n.clamp(1, self.live.len().max(1));
        self.ranks.clear();
        self.ranks
            .extend(self.live.iter().map(|(_, _, seg)| eviction_rank(seg)));
        if self.ranks.is_empty() {
            return;
        }
        let (_, &mut cut, _) = self.ranks.select_nth_unstable(n - 1);
        // Each victim goes straight from the table to the retired flows, which grow once.
        self.out.flows.reserve(n);
        for (_, key, seg) in self
            .live
            .extract_if(|(_, _, seg)| eviction_rank(seg) <= cut)
        {
            self.heap -= heap_of(&seg);
            self.out.evicted += 1;
            self.out.retire(key, seg, EndReason::Evicted);
        }
    }

    /// Retire the flows idle for longer than their timeout at `now`.
    fn sweep(&mut self, cfg: &FlowConfig, now: i64) {
        for (_, key, seg) in self.live.extract_if(|(_, key, seg)| {
            seg.last_ts != NO_TIMESTAMP
                && i128::from(now) - i128::from(seg.last_ts) > i128::from(cfg.timeout(key.proto))
        }) {
            self.heap -= heap_of(&seg);
            self.out.retire(key, seg, EndReason::Idle);
        }
    }
}

/// The live flows of one capture, fed chunk by chunk in file order (on the writer thread,
/// which lends the shards' work to the engine's threads).
pub struct FlowTable {
    cfg: FlowConfig,
    budget: Budget,
    shards: Vec<Shard>,
    /// The latest timestamp seen, and the one at which idle flows were last retired.
    now: Option<i64>,
    swept: Option<i64>,
}

impl FlowTable {
    /// The live flows of one conversion. With [`Rows::Build`] the table hands on every flow
    /// it retires ([`FlowTable::take_retired`], [`FlowTable::finish`]) for the flow outputs;
    /// with [`Rows::Skip`] (no flow rows, only the summary item) it counts them into
    /// [`FlowStats`] (totals, evictions, services, the top flows) and hands on none. Which flows
    /// there are, and the stats, do not depend on it.
    pub fn new(cfg: FlowConfig, rows: Rows) -> Self {
        let budget = Budget::of(cfg.max_bytes);
        let shard = || Shard {
            out: Retired {
                count_only: rows == Rows::Skip,
                ..Retired::default()
            },
            ..Shard::default()
        };
        FlowTable {
            cfg,
            budget,
            shards: (0..SHARDS).map(|_| shard()).collect(),
            now: None,
            swept: None,
        }
    }

    /// Fold the next chunk's flows in: on the current rayon pool's threads when
    /// [`ShardedFlows::merges_in_parallel`], else on the caller's.
    pub fn merge(&mut self, chunk: ShardedFlows) {
        if let Some(t) = chunk.max_ts {
            self.now = Some(self.now.map_or(t, |n| n.max(t)));
        }
        // Idle flows are retired when time has moved on by a quarter of the shortest timeout,
        // to keep the cost per packet small; that does not change which packets make a flow,
        // only when it is written.
        let step = (self.cfg.min_timeout() / 4).max(1);
        let sweep = match (self.now, self.swept) {
            (Some(now), Some(s)) if now.saturating_sub(s) < step => None,
            (now, _) => now,
        };
        if sweep.is_some() {
            self.swept = sweep;
        }
        let (cfg, budget) = (&self.cfg, &self.budget);
        let work = |(shard, part): (&mut Shard, Vec<_>)| {
            shard.merge(cfg, budget, part);
            if let Some(now) = sweep {
                shard.sweep(cfg, now);
            }
        };
        if chunk.merges_in_parallel() {
            self.shards.par_iter_mut().zip(chunk.parts).for_each(work);
        } else {
            self.shards.iter_mut().zip(chunk.parts).for_each(work);
        }
    }

    /// Fold in one flow of a split capture's range, as its worker wrote it ([`super::parts`]):
    /// the ranges in file order, each range's flows in the order written. A flow `open` at the
    /// end of its range stays live; a flow live from an earlier range is continued by the
    /// first flow of its key in a later range exactly when that flow's first packet would
    /// have continued it; every other flow is retired as its worker ended it.
    pub fn merge_part(&mut self, flow: Flow, open: bool) {
        let hash = key_hash(&flow.key);
        self.shards[shard_of(hash)].merge_part(&self.cfg, &self.budget, hash, flow, open);
    }

    /// Every flow of a range is in: retire the live flows that no later packet can continue,
    /// those idle for longer than their timeout at `max_ts`, the range's latest timestamp.
    pub fn range_done(&mut self, max_ts: Option<i64>) {
        if let Some(t) = max_ts {
            self.now = Some(self.now.map_or(t, |n| n.max(t)));
        }
        self.sweep_now();
    }

    /// Retire the flows idle for longer than their timeout at the latest timestamp merged.
    fn sweep_now(&mut self) {
        if let Some(now) = self.now {
            let cfg = &self.cfg;
            self.shards.par_iter_mut().for_each(|s| s.sweep(cfg, now));
            self.swept = Some(now);
        }
    }

    /// The latest timestamp merged so far.
    pub fn now(&self) -> Option<i64> {
        self.now
    }

    /// End of a split capture's range: the flows still live, not retired (they are open, to
    /// be merged with the next range's), in file order; the table is left empty.
    pub fn take_live(&mut self) -> InFileOrder {
        let live = self.shards.iter_mut().map(|s| {
            s.heap = 0;
            std::mem::take(&mut s.live)
                .into_iter()
                .map(|(_, key, seg)| Flow {
                    key,
                    seg,
                    end: EndReason::EndOfCapture,
                })
                .collect()
        });
        InFileOrder::new(live.collect())
    }

    /// The flows retired since the last call, in file order.
    pub fn take_retired(&mut self) -> InFileOrder {
        InFileOrder::new(
            self.shards
                .iter_mut()
                .map(|s| std::mem::take(&mut s.out.flows))
                .collect(),
        )
    }

    /// End of capture: every live flow is retired; returns them (by first frame) and the
    /// totals. The tables' memory is given back before the rows are built. A flow idle past
    /// its timeout at the capture's latest timestamp ended `idle`, whether or not a sweep
    /// (which runs only every quarter timeout) had reached it yet: the end reason does not
    /// depend on where the chunks or a split capture's ranges fall.
    pub fn finish(&mut self) -> (InFileOrder, FlowStats) {
        self.sweep_now();
        let mut stats = FlowStats {
            community_id_seed: self.cfg.community_id_seed,
            ..FlowStats::default()
        };
        for s in &mut self.shards {
            for (_, key, seg) in std::mem::take(&mut s.live) {
                s.out.retire(key, seg, EndReason::EndOfCapture);
            }
            stats.flows += s.out.count;
            stats.evicted += s.out.evicted;
            for (total, n) in stats.services.iter_mut().zip(s.out.services) {
                *total += n;
            }
            stats.top.append(&mut s.out.top);
        }
        stats.top.sort_unstable_by(flow_order);
        stats.top.truncate(TOP_FLOWS);
        (self.take_retired(), stats)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{run_with_stats, tcp};
    use super::*;
    use crate::dissect::Packet;
    use crate::flows::{ChunkFlows, IPPROTO_TCP, Seen};

    const SYN: u16 = 0x02;
    const ACK: u16 = 0x10;
    const FIN: u16 = 0x01;

    #[test]
    fn the_budget_bounds_the_tables_at_their_largest() {
        for mib in [1, 8, 32, 100, 1024] {
            let max = mib << 20;
            let b = Budget::of(max);
            let buckets = b.max_live * 16 / 7 * SHARDS;
            assert!(buckets.is_power_of_two(), "{mib}: {buckets}");
            assert!(buckets * ENTRY_BYTES + b.max_heap * SHARDS <= max, "{mib}");
            // Not much of it wasted: at least 7/16 of the table's share in flows.
            assert!(buckets * ENTRY_BYTES * 2 > max / 8 * 7, "{mib}");
        }
        // Tiny budgets still hold a few flows per shard.
        assert!(Budget::of(0).max_live >= 7);
    }

    #[test]
    fn flows_are_read_in_file_order_where_they_lie() {
        let flow = |port: u16, first_frame: u64| {
            let mut f = crate::flows::worst_case_flow(port);
            f.seg.first_frame = first_frame;
            f
        };
        // Each shard's flows in the order they retired, which is not the file's.
        let ordered = InFileOrder::new(vec![
            vec![flow(0, 9), flow(1, 2)],
            vec![],
            vec![flow(2, 5), flow(3, 2), flow(4, 1)],
        ]);
        let ports = |flows: Vec<&Flow>| -> Vec<u16> {
            flows.iter().map(|f| f.key.b.port.unwrap_or(0)).collect()
        };
        // By first frame; flows of one frame by shard, then by position.
        assert_eq!(ordered.len(), 5);
        assert_eq!(ports(ordered.iter().collect()), [4, 1, 3, 2, 0]);
        assert_eq!(ordered.range(1..3).len(), 2);
        assert_eq!(ports(ordered.range(1..3).collect()), [1, 3]);
        assert!(ports(ordered.range(5..5).collect()).is_empty());
        let moved = ordered.into_vec();
        assert_eq!(ports(moved.iter().collect()), [4, 1, 3, 2, 0]);
    }

    #[test]
    fn top_flows_are_the_biggest() {
        let cfg = FlowConfig::default();
        let mut chunk = ChunkFlows::default();
        for i in 0..(TOP_FLOWS as u64 + 50) {
            let p = tcp(1, i as u16, 2, 80, ACK);
            chunk.add(&cfg, &p, &Seen::packet(i + 1, 0, (i % 37) as u32, &p));
        }
        let mut table = FlowTable::new(cfg, Rows::Build);
        table.merge(chunk.into_shards());
        let (_, stats) = table.finish();
        assert_eq!(stats.top.len(), TOP_FLOWS);
        assert!(
            stats
                .top
                .windows(2)
                .all(|w| flow_order(&w[0], &w[1]).is_le())
        );
        assert_eq!(stats.top[0].bytes(), 36);
    }

    /// A budget that holds `flows` live flows at most.
    fn tiny(flows: usize) -> FlowConfig {
        let mut max_bytes = 0;
        while Budget::of(max_bytes).max_flows() < flows {
            max_bytes += 4096;
        }
        FlowConfig {
            max_bytes,
            ..FlowConfig::default()
        }
    }

    #[test]
    fn a_flood_under_a_tiny_budget_loses_no_packet_and_spares_the_real_conversation() {
        let cfg = tiny(100);
        let max = Budget::of(cfg.max_bytes).max_flows();
        assert!(max < 200, "{max}");
        // 5,000 spoofed SYNs (each its own flow), and one conversation of 50 packets all
        // through them.
        let mut packets = Vec::new();
        for i in 0..5_000u16 {
            packets.push((1, tcp(3, 1000 + i, 2, 80, SYN)));
            if i % 100 == 0 {
                let mut data = tcp(1, 40000, 2, 443, ACK);
                data.payload_len = Some(100);
                packets.push((1, data));
            }
        }
        for chunk in [1, 7, 256, packets.len()] {
            let (flows, stats) = run_with_stats(cfg, &packets, chunk);
            // Every packet is in exactly one flow.
            assert_eq!(
                flows.iter().map(|f| f.packets()).sum::<u64>(),
                packets.len() as u64
            );
            assert_eq!(stats.flows as usize, flows.len());
            // Every SYN was its own flow, written once: evicted, or live at the end.
            let syns: Vec<_> = flows
                .iter()
                .filter(|f| f.responder().port == Some(80))
                .collect();
            assert_eq!(syns.len(), 5_000, "{chunk}");
            assert!(syns.iter().all(|f| f.packets() == 1));
            let evicted = flows.iter().filter(|f| f.end == EndReason::Evicted).count();
            assert_eq!(evicted as u64, stats.evicted);
            assert!(evicted >= 5_000 - max, "{chunk}: {evicted}");
            // The conversation was never evicted: single-packet flows go first.
            let talk: Vec<_> = flows
                .iter()
                .filter(|f| f.responder().port == Some(443))
                .collect();
            assert_eq!(talk.len(), 1, "{chunk}");
            assert_eq!(talk[0].packets(), 50);
            assert_eq!(talk[0].end, EndReason::EndOfCapture);
        }
    }

    #[test]
    fn a_counting_table_keeps_no_flow_and_counts_the_same() {
        // A flood under a tiny budget (evictions, retirements in every merge) and one
        // conversation among its packets.
        let cfg = tiny(100);
        let mut packets = Vec::new();
        for i in 0..3_000u16 {
            packets.push(tcp(3, 1000 + i, 2, 80, SYN));
            if i % 50 == 0 {
                let mut data = tcp(1, 40000, 2, 443, ACK);
                data.payload_len = Some(100 + u32::from(i));
                packets.push(data);
            }
        }
        for chunk in [7, 256] {
            let (mut rows, mut counting) = (
                FlowTable::new(cfg, Rows::Build),
                FlowTable::new(cfg, Rows::Skip),
            );
            let mut kept = 0;
            for (c, part) in packets.chunks(chunk).enumerate() {
                let shards = || {
                    let mut cf = ChunkFlows::default();
                    for (i, p) in part.iter().enumerate() {
                        let frame = (c * chunk + i + 1) as u64;
                        cf.add(&cfg, p, &Seen::packet(frame, 1, 60 + i as u32, p));
                    }
                    cf.into_shards()
                };
                counting.merge(shards());
                rows.merge(shards());
                kept += rows.take_retired().len();
                assert!(counting.take_retired().is_empty(), "{chunk}");
            }
            let (rest, stats) = rows.finish();
            let (none, counted) = counting.finish();
            assert!(none.is_empty(), "{chunk}");
            assert_eq!(stats.flows as usize, kept + rest.len());
            assert!(stats.evicted > 2_000, "{chunk}: {}", stats.evicted);
            assert_eq!(counted, stats, "{chunk}");
        }
    }

    #[test]
    fn eviction_takes_exactly_the_lowest_ranks() {
        // A shard of closed connections (every fifth), single SYNs (every third of the
        // others) and two-packet flows; last frames shuffled so that the table's order is
        // not the ranks', and distinct, so that the ranks are.
        let mut shard = Shard::default();
        let budget = Budget {
            max_live: usize::MAX,
            max_heap: usize::MAX,
        };
        for i in 0..3_000u16 {
            let frame = u64::from(i) * 7919 % 3_000 + 1;
            let port = 10_000 + i;
            let (first, second) = match (i % 5, i % 3) {
                (0, _) => (
                    tcp(1, port, 2, 80, FIN | ACK),
                    Some(tcp(2, 80, 1, port, FIN | ACK)),
                ),
                (_, 0) => (tcp(1, port, 2, 80, SYN), None),
                _ => (tcp(1, port, 2, 80, SYN), Some(tcp(1, port, 2, 80, ACK))),
            };
            let (key, from_a) = crate::flows::key_of(&first).expect("a TCP key");
            let mut seg = Segment::new(IPPROTO_TCP, from_a, &Seen::packet(frame, 1, 60, &first));
            if let Some(p) = second {
                let (_, p_from_a) = crate::flows::key_of(&p).expect("a TCP key");
                seg.add(IPPROTO_TCP, p_from_a, &Seen::packet(frame, 1, 60, &p));
            }
            shard.admit(&budget, key_hash(&key), key, seg);
        }
        let rank_of = |seg: &Segment| eviction_rank(seg);
        let classes: std::collections::BTreeSet<u64> = shard
            .live
            .iter()
            .map(|(_, _, s)| rank_of(s) >> 62)
            .collect();
        assert_eq!(classes.len(), 3, "closed, single-packet and other flows");
        for n in [1, 7, 500, 1_000] {
            let mut before: Vec<u64> = shard.live.iter().map(|(_, _, s)| rank_of(s)).collect();
            before.sort_unstable();
            shard.out.flows.clear();
            shard.evict(n);
            let mut gone: Vec<u64> = shard.out.flows.iter().map(|f| rank_of(&f.seg)).collect();
            gone.sort_unstable();
            // Exactly the n lowest went, and the rest stayed.
            assert_eq!(gone, before[..n], "{n}");
            assert_eq!(shard.live.len(), before.len() - n, "{n}");
            assert!(shard.out.flows.iter().all(|f| f.end == EndReason::Evicted));
        }
        assert_eq!(shard.out.evicted, 1 + 7 + 500 + 1_000);
    }

    #[test]
    fn closed_connections_are_evicted_before_open_ones() {
        let cfg = tiny(100);
        let max = Budget::of(cfg.max_bytes).max_flows();
        let mut packets = Vec::new();
        // Half the budget in closed connections, then four times as many open ones (two
        // packets each): every closed one goes before any open one.
        for i in 0..(max / 2) as u16 {
            packets.push((1, tcp(1, 30000 + i, 2, 80, FIN | ACK)));
            packets.push((1, tcp(2, 80, 1, 30000 + i, FIN | ACK)));
        }
        for i in 0..(2 * max) as u16 {
            packets.push((1, tcp(1, 2000 + i, 2, 80, ACK)));
            packets.push((1, tcp(2, 80, 1, 2000 + i, ACK)));
        }
        let (flows, stats) = run_with_stats(cfg, &packets, packets.len());
        assert_eq!(flows.len(), max / 2 + 2 * max);
        let closed = |f: &&Flow| f.originator().port.is_some_and(|p| p >= 30000);
        assert!(
            flows
                .iter()
                .filter(closed)
                .all(|f| f.end == EndReason::Evicted)
        );
        assert!(stats.evicted as usize >= max / 2 + max);
        // The latest conversation is still live at the end.
        let last = flows
            .iter()
            .max_by_key(|f| f.seg.last_frame)
            .expect("flows");
        assert_eq!(last.end, EndReason::EndOfCapture);
    }

    #[test]
    fn end_reasons() {
        let cfg = FlowConfig::default();
        let (flows, _) = run_with_stats(
            cfg,
            &[
                (0, tcp(1, 1, 2, 80, SYN)),
                (0, tcp(1, 2, 2, 80, FIN | ACK)),
                (0, tcp(2, 80, 1, 2, FIN | ACK)),
                // Idle past the TCP timeout: the first flow ends; the same key again.
                (400, tcp(1, 1, 2, 80, SYN)),
            ],
            1,
        );
        let ends: Vec<_> = flows.iter().map(|f| f.end.as_str()).collect();
        assert_eq!(ends, ["idle", "tcp_close", "end_of_capture"]);
        assert_eq!(flows[0].key.proto, IPPROTO_TCP);
        let _ = Packet::default();
    }
}
