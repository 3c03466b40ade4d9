//! The live flows of one capture, within a memory budget, on every core.
//!
//! The table is split into [`SHARDS`] shards by a hash of the flow key; each chunk's segments
//! are split the same way on the worker that folded them ([`ChunkFlows::into_shards`]), and the
//! shards merge their parts in parallel. A key lives in one shard only, so the shards never
//! need each other, and since the shard count does not depend on the number of threads, the
//! flows written do not either.
//!
//! Memory is bounded like a flow meter's (Suricata's memcap): each shard may hold at most
//! [`Budget::max_live`] flows, a number chosen so that its slab of flows and its index, at
//! their largest, fit its share of [`FlowConfig::max_bytes`], and the bytes the flows hold
//! outside the slab (server names, tunnel envelopes) have a share of their own. When a new
//! flow would pass either, a quarter of the shard's flows are evicted — TCP connections already
//! closed first (nothing is lost but a late ACK), then single-packet flows (scans, floods, S0
//! attempts that will never complete), then the rest, each least recently seen first — and
//! written with [`EndReason::Evicted`], so nothing is silently lost: a later packet of an
//! evicted flow starts a new row.

use std::cmp::Ordering;
use std::hash::BuildHasher;
use std::mem::size_of;

use hashbrown::HashTable;
use rayon::prelude::*;
use rustc_hash::FxBuildHasher;

#[cfg(test)]
use super::DEFAULT_FLOW_MEMORY;
use super::{EndReason, Flow, FlowConfig, FlowKey, KeyedSegment, Segment, ShardedFlows};
use crate::app::Services;
use crate::columns::Rows;
use crate::dissect::Envelope;
use crate::reader::NO_TIMESTAMP;
use crate::spare::Spare;

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

/// Bytes a live flow takes in its shard's slab: its slot, its hash and its rank.
const SLOT_BYTES: usize = size_of::<Option<(FlowKey, Segment)>>() + 2 * size_of::<u64>();

/// Bytes a bucket of a shard's index takes: a slot number and the table's control byte.
const BUCKET_BYTES: usize = size_of::<u32>() + 1;

/// What the budget allows each shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Most flows live in a shard.
    pub max_live: usize,
    /// Most bytes a shard's flows may hold outside its slab.
    pub max_heap: usize,
}

impl Budget {
    /// Split `max_bytes` over the shards. Of each shard's share, 7/8 are for its flows: the
    /// slab ([`SLOT_BYTES`] a flow; it grows to at most `max_live` slots) and the index. The
    /// index is a hash table (hashbrown) with a power-of-two number of buckets, up to 7/8 of
    /// them in use, which grows to twice its size when it must insert while more than half
    /// full with no free bucket left (removals leave tombstones): one that never holds more
    /// than 7/16 of its buckets never grows past them. `max_live` is the most flows that a
    /// slab and such an index fit in; what is left of the share is for names and envelopes.
    pub fn of(max_bytes: usize) -> Budget {
        let share = max_bytes / SHARDS;
        let flows = share / 8 * 7;
        // Tiny budgets still hold a few flows per shard.
        let (mut max_live, mut index) = (7, 16 * BUCKET_BYTES);
        let mut buckets = 16;
        while buckets * BUCKET_BYTES <= flows {
            let fit = (flows - buckets * BUCKET_BYTES) / SLOT_BYTES;
            let live = (buckets * 7 / 16).min(fit);
            if live > max_live {
                (max_live, index) = (live, buckets * BUCKET_BYTES);
            }
            buckets *= 2;
        }
        Budget {
            max_live,
            max_heap: share.saturating_sub(index + max_live * SLOT_BYTES),
        }
    }

    /// Most flows live at once in the whole table.
    pub fn max_flows(&self) -> usize {
        self.max_live * SHARDS
    }
}

/// Bytes a live flow holds outside its slot.
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
/// all over the shards' lists: measured before the shards kept their flows in a slab, 5% more
/// CPU on a flood than this one move; since, the same CPU, for no less code.)
pub struct InFileOrder {
    flows: Vec<Flow>,
    /// Where the emptied list goes when this is dropped, for the table's next batch.
    spare: SpareLists,
}

/// Emptied lists of [`InFileOrder`], for the next batches of the same table. A flood's batches
/// are megabytes of flows, handed on every chunk and dropped once encoded; a new list each
/// time made every page of it fault in and be zeroed again (measured: `InFileOrder::new`'s
/// page faults were 2% of the flood's CPU, and its moves into cold memory most of its time).
/// What is kept is bounded, [`SPARE_LISTS`] lists of at most [`SPARE_LIST_FLOWS`] flows, since a
/// list grows to the largest batch it served.
type SpareLists = Spare<Vec<Flow>>;

/// Lists kept: a flood has two batches in hand at once (one being encoded, the next waiting
/// for its turn), and each is taken back as the next is made.
const SPARE_LISTS: usize = 2;
/// Flows a list kept may hold: a row group's worth (a flood's batch is about a chunk's flows,
/// 8,192 by default). A larger one (a sweep after a gap in the capture, the whole live table
/// at its end) is freed.
const SPARE_LIST_FLOWS: usize = crate::encode::FLOW_ROW_GROUP;

fn spare_lists() -> SpareLists {
    Spare::new(SPARE_LISTS, SPARE_LIST_FLOWS * size_of::<Flow>())
}

impl Drop for InFileOrder {
    fn drop(&mut self) {
        self.spare.give(std::mem::take(&mut self.flows));
    }
}

/// A shard's flows in the order they left it, each with its place in file order (first
/// frame, depth) noted as it left, while the flow was still in the cache. Read from the flows
/// by [`InFileOrder::new`], a flood's places cost a cache miss each: measured, most of its
/// time (6% of the flood's CPU), and the flows moved once more to be wrapped in an `Option`.
#[derive(Default)]
struct Leaving {
    flows: Vec<Option<Flow>>,
    places: Vec<(u64, usize)>,
}

impl Leaving {
    fn push(&mut self, flow: Flow) {
        let depth = flow.seg.envelope.as_ref().map_or(0, |e| e.layers().len());
        self.places.push((flow.seg.first_frame, depth));
        self.flows.push(Some(flow));
    }

    fn reserve(&mut self, n: usize) {
        self.flows.reserve(n);
        self.places.reserve(n);
    }

    fn len(&self) -> usize {
        self.flows.len()
    }

    /// The flows, in the order they left.
    #[cfg(test)]
    fn iter(&self) -> impl Iterator<Item = &Flow> {
        self.flows.iter().flatten()
    }
}

impl FromIterator<Flow> for Leaving {
    fn from_iter<I: IntoIterator<Item = Flow>>(flows: I) -> Self {
        let mut leaving = Leaving::default();
        flows.into_iter().for_each(|f| leaving.push(f));
        leaving
    }
}

impl InFileOrder {
    fn new(mut shards: Vec<Leaving>, spare: &SpareLists) -> Self {
        // Each flow's place and where it is, packed into one integer to sort, one comparison
        // instead of up to four: first frame, tunnel depth, shard, index in the shard's list.
        // An index fits its 40 bits: a list of 2^40 flows would take hundreds of TiB.
        const DEPTH: u32 = 48;
        const _: () = assert!(SHARDS <= 0x100);
        const SHARD: u32 = 40;
        let mut order: Vec<u128> = Vec::with_capacity(shards.iter().map(Leaving::len).sum());
        for (shard, leaving) in shards.iter().enumerate() {
            order.extend(
                leaving
                    .places
                    .iter()
                    .enumerate()
                    .map(|(i, &(first_frame, depth))| {
                        u128::from(first_frame) << 64
                            | (depth.min(0xffff) as u128) << DEPTH
                            | (shard as u128) << SHARD
                            | i as u128
                    }),
            );
        }
        order.sort_unstable();
        // Sized once: the list is kept until its row groups are written.
        let mut flows = spare.take();
        flows.reserve_exact(order.len());
        flows.extend(order.into_iter().filter_map(|place| {
            let shard = (place >> SHARD) as usize & 0xff;
            let i = place as usize & ((1 << SHARD) - 1);
            shards[shard].flows[i].take()
        }));
        InFileOrder {
            flows,
            spare: spare.clone(),
        }
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
    pub(crate) fn into_vec(mut self) -> Vec<Flow> {
        std::mem::take(&mut self.flows)
    }
}

/// The flows a shard has let go of, and its totals.
#[derive(Default)]
struct Retired {
    /// Retired since the table last handed them on (none kept when the table only counts).
    flows: Leaving,
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

/// One shard of the live flows: the flows in a slab of slots, and a hash table of slot numbers
/// to find them by key.
///
/// A flood's flows are each admitted, then evicted oldest first a few chunks later. Kept in
/// the hash table itself (inline, each where its hash put it), every admission wrote a
/// 240-byte entry to a random place in the shard's table and every eviction read it back from
/// another, across megabytes: measured, the flood's CPU rose by a quarter from a 2 MiB budget
/// to a 32 MiB one. In the slab, the victims of an eviction are taken in slot order and their
/// slots filled again in that order, so that both mostly stream through memory; the index (4
/// bytes and a control byte a bucket) and the ranks and hashes (8 bytes a slot) are what is
/// read at random or scanned whole. The slab also takes half the memory a flow took in the
/// table, which was never more than 7/16 full.
#[derive(Default)]
struct Shard {
    /// Slot numbers, hashed by their flows' key hashes.
    index: HashTable<u32>,
    /// The flows; `None` in a free slot.
    slots: Vec<Option<(FlowKey, Segment)>>,
    /// Per slot, its key's hash (to find its index entry and to rehash when the index grows).
    hashes: Vec<u64>,
    /// Per slot, its flow's [`eviction_rank`] (kept up to date as the flow grows; a free
    /// slot's is `u64::MAX`, above every flow's).
    ranks: Vec<u64>,
    /// Free slots, pushed highest first by evictions and sweeps, so that they are filled
    /// again lowest first.
    free: Vec<u32>,
    /// Bytes the live flows hold outside the slab.
    heap: usize,
    out: Retired,
    /// Scratch space for eviction ranks.
    picked: Vec<u64>,
}

impl Shard {
    fn len(&self) -> usize {
        self.index.len()
    }

    /// The slot of the live flow of `key`, whose hash is `hash`.
    fn find(&self, hash: u64, key: &FlowKey) -> Option<usize> {
        let (slots, hashes) = (&self.slots, &self.hashes);
        self.index
            .find(hash, |&i| {
                let i = i as usize;
                hashes[i] == hash && slots[i].as_ref().is_some_and(|(k, _)| k == key)
            })
            .map(|&i| i as usize)
    }

    /// Whether the flow in slot `i` is continued by a segment whose first packet came at
    /// network time `now` ([`Segment::continues`]).
    fn continues(&self, i: usize, now: i64, timeout: i64) -> bool {
        self.slots[i]
            .as_ref()
            .is_some_and(|(_, live)| live.continues(now, timeout))
    }

    /// Change the flow in slot `i` with `change` (a later segment merged in, or the flow
    /// replaced), keeping the shard's heap bytes and the slot's rank up to date; `change`'s
    /// result, or `None` if the slot is free.
    fn update<R>(&mut self, i: usize, change: impl FnOnce(&mut Segment) -> R) -> Option<R> {
        let (_, live) = self.slots[i].as_mut()?;
        let before = heap_of(live);
        let out = change(live);
        self.heap = self.heap - before + heap_of(live);
        self.ranks[i] = eviction_rank(live);
        Some(out)
    }

    /// Take the flow out of slot `i` (and its index entry); the slot becomes free.
    fn take(&mut self, i: usize) -> Option<(FlowKey, Segment)> {
        let flow = self.slots[i].take()?;
        let hash = self.hashes[i];
        if let Ok(entry) = self.index.find_entry(hash, |&s| s as usize == i) {
            entry.remove();
        }
        self.ranks[i] = u64::MAX;
        self.free.push(i as u32);
        self.heap -= heap_of(&flow.1);
        Some(flow)
    }

    fn merge(&mut self, cfg: &FlowConfig, budget: &Budget, part: Vec<KeyedSegment>) {
        for KeyedSegment {
            hash,
            key,
            seg,
            first: may_continue,
        } in part
        {
            if let Some(i) = self.find(hash, &key) {
                if may_continue && self.continues(i, seg.first_seen, cfg.timeout(key.proto)) {
                    self.update(i, |live| live.merge(seg));
                } else if let Some(done) = self.update(i, |live| std::mem::replace(live, seg)) {
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
        if let Some(i) = self.find(hash, &key) {
            // A flow live at the end of an earlier range, met again: this is the first flow
            // of its key in this range (a later one would have found it gone).
            if self.continues(i, seg.first_seen, cfg.timeout(key.proto)) {
                self.update(i, |live| live.merge(seg));
                if !open && let Some((key, whole)) = self.take(i) {
                    self.retire_part(key, whole, end);
                }
                return;
            }
            // Not continued: the earlier flow ended idle, and this one stands alone.
            if open {
                if let Some(earlier) = self.update(i, |live| std::mem::replace(live, seg)) {
                    self.out.retire(key, earlier, EndReason::Idle);
                }
            } else {
                if let Some((key, earlier)) = self.take(i) {
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

    /// Make `seg` a live flow, evicting first if the shard is at its budget.
    fn admit(&mut self, budget: &Budget, hash: u64, key: FlowKey, seg: Segment) {
        let heap = heap_of(&seg);
        if self.len() >= budget.max_live || self.heap + heap > budget.max_heap {
            self.evict(budget.max_live.div_ceil(4));
        }
        self.heap += heap;
        let rank = eviction_rank(&seg);
        let i = match self.free.pop() {
            Some(i) => {
                let i = i as usize;
                self.slots[i] = Some((key, seg));
                self.hashes[i] = hash;
                self.ranks[i] = rank;
                i
            }
            None => {
                if self.slots.len() == self.slots.capacity() {
                    // Doubling, but never past the budget's slots.
                    let room = budget.max_live.saturating_sub(self.slots.len());
                    let more = self.slots.len().max(16).min(room).max(1);
                    self.slots.reserve_exact(more);
                    self.hashes.reserve_exact(more);
                    self.ranks.reserve_exact(more);
                }
                self.slots.push(Some((key, seg)));
                self.hashes.push(hash);
                self.ranks.push(rank);
                self.slots.len() - 1
            }
        };
        let hashes = &self.hashes;
        self.index
            .insert_unique(hash, i as u32, |&s| hashes[s as usize]);
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
        let n = n.clamp(1, self.len().max(1));
        self.picked.clear();
        self.picked
            .extend(self.ranks.iter().copied().filter(|&r| r != u64::MAX));
        if self.picked.is_empty() {
            return;
        }
        let (_, &mut cut, _) = self.picked.select_nth_unstable(n - 1);
        // Each victim goes straight from its slot to the retired flows, which grow once; the
        // slots are freed highest first, so that the next admissions fill them lowest first.
        self.out.flows.reserve(n);
        for i in (0..self.slots.len()).rev() {
            if self.ranks[i] <= cut
                && let Some((key, seg)) = self.take(i)
            {
                self.out.evicted += 1;
                self.out.retire(key, seg, EndReason::Evicted);
            }
        }
    }

    /// Retire the flows idle for longer than their timeout at `now`.
    fn sweep(&mut self, cfg: &FlowConfig, now: i64) {
        for i in (0..self.slots.len()).rev() {
            let idle = self.slots[i]
                .as_ref()
                .is_some_and(|(key, seg)| !seg.continues(now, cfg.timeout(key.proto)));
            if idle && let Some((key, seg)) = self.take(i) {
                self.out.retire(key, seg, EndReason::Idle);
            }
        }
    }

    /// Every live flow, in slot order; the shard is left empty (its memory given back).
    fn drain(&mut self) -> std::iter::Flatten<std::vec::IntoIter<Option<(FlowKey, Segment)>>> {
        self.heap = 0;
        self.index = HashTable::new();
        self.hashes = Vec::new();
        self.ranks = Vec::new();
        self.free = Vec::new();
        std::mem::take(&mut self.slots).into_iter().flatten()
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
    spare: SpareLists,
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
            spare: spare_lists(),
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
    /// have continued it; every other flow is retired as its worker ended it. (A range's worker
    /// knows only its own range's times: network time before it is the earlier ranges' latest,
    /// which its flows are brought up to here.)
    pub fn merge_part(&mut self, mut flow: Flow, open: bool) {
        flow.seg.seen_after(self.now.unwrap_or(NO_TIMESTAMP));
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
            s.drain()
                .map(|(key, seg)| Flow {
                    key,
                    seg,
                    end: EndReason::EndOfCapture,
                })
                .collect()
        });
        InFileOrder::new(live.collect(), &self.spare)
    }

    /// The flows retired since the last call, in file order.
    pub fn take_retired(&mut self) -> InFileOrder {
        InFileOrder::new(
            self.shards
                .iter_mut()
                .map(|s| std::mem::take(&mut s.out.flows))
                .collect(),
            &self.spare,
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
            for (key, seg) in s.drain() {
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
    fn the_budget_bounds_the_slabs_and_indexes_at_their_largest() {
        for mib in [1, 8, 32, 100, 1024] {
            let max = mib << 20;
            let b = Budget::of(max);
            // The index's buckets: the fewest that hold max_live at 7/16 of them.
            let buckets = (b.max_live * 16).div_ceil(7).next_power_of_two();
            let shard = buckets * BUCKET_BYTES + b.max_live * SLOT_BYTES + b.max_heap;
            assert!(shard * SHARDS <= max, "{mib}");
            // Not much of it wasted: at least 2/3 of the flows' share in slots.
            assert!(
                b.max_live * SLOT_BYTES * SHARDS * 3 > max / 8 * 7 * 2,
                "{mib}"
            );
        }
        assert_eq!(Budget::of(DEFAULT_FLOW_MEMORY).max_flows(), 57_344);
        // Tiny budgets still hold a few flows per shard.
        assert!(Budget::of(0).max_live >= 7);
    }

    /// A spoofed SYN's flow, from source port `port`, seen at frame `frame`.
    fn syn_flow(port: u16, frame: u64) -> (FlowKey, Segment) {
        let p = tcp(3, port, 2, 80, SYN);
        let (key, from_a) = crate::flows::key_of(&p).expect("a TCP key");
        let seg = Segment::new(IPPROTO_TCP, from_a, &Seen::packet(frame, 1, 60, &p), 1);
        (key, seg)
    }

    #[test]
    fn a_slab_grows_no_further_than_its_budget() {
        let budget = Budget::of(1 << 20);
        let mut shard = Shard::default();
        for i in 0..(3 * budget.max_live) as u16 {
            let (key, seg) = syn_flow(1000 + i, 1);
            shard.admit(&budget, key_hash(&key), key, seg);
            assert!(shard.len() <= budget.max_live);
        }
        assert_eq!(shard.slots.len(), budget.max_live);
        assert_eq!(shard.slots.capacity(), budget.max_live);
        assert_eq!(shard.ranks.capacity(), budget.max_live);
        // The index never grew past the buckets the budget counted.
        let buckets = (budget.max_live * 16).div_ceil(7).next_power_of_two();
        assert!(shard.index.capacity() <= buckets * 7 / 8);
    }

    #[test]
    fn a_dropped_batch_list_serves_the_next_and_the_spares_stay_bounded() {
        let spare = spare_lists();
        let batch = InFileOrder::new(
            vec![
                [crate::flows::worst_case_flow(1)].into_iter().collect(),
                [crate::flows::worst_case_flow(2)].into_iter().collect(),
            ],
            &spare,
        );
        let list = batch.flows.as_ptr();
        drop(batch);
        assert_eq!(spare.kept(), 1);
        // The next batch's list is the same allocation, empty.
        let next = spare.take();
        assert!(next.is_empty());
        assert_eq!(next.as_ptr(), list);
        assert_eq!(spare.kept(), 0);
        // At most SPARE_LISTS lists are kept, and none that could hold more than
        // SPARE_LIST_FLOWS flows.
        for _ in 0..SPARE_LISTS + 2 {
            spare.give(Vec::with_capacity(4));
        }
        assert_eq!(spare.kept(), SPARE_LISTS);
        let other = spare_lists();
        other.give(Vec::with_capacity(SPARE_LIST_FLOWS + 1));
        assert_eq!(other.kept(), 0);
    }

    #[test]
    fn flows_are_read_in_file_order_where_they_lie() {
        let flow = |port: u16, first_frame: u64| {
            let mut f = crate::flows::worst_case_flow(port);
            f.seg.first_frame = first_frame;
            f
        };
        // Each shard's flows in the order they retired, which is not the file's.
        let ordered = InFileOrder::new(
            vec![
                [flow(0, 9), flow(1, 2)].into_iter().collect(),
                Leaving::default(),
                [flow(2, 5), flow(3, 2), flow(4, 1)].into_iter().collect(),
            ],
            &spare_lists(),
        );
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
        // 5,000 spoofed SYNs (each its own flow), and one conversation of 100 packets all
        // through them (its second packet comes before a quarter of its shard's ~13 flows have
        // been replaced by SYNs: until then it is a single-packet flow, and the oldest).
        let mut packets = Vec::new();
        for i in 0..5_000u16 {
            packets.push((1, tcp(3, 1000 + i, 2, 80, SYN)));
            if i % 50 == 0 {
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
            assert_eq!(talk[0].packets(), 100);
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
            let mut seg = Segment::new(IPPROTO_TCP, from_a, &Seen::packet(frame, 1, 60, &first), 1);
            if let Some(p) = second {
                let (_, p_from_a) = crate::flows::key_of(&p).expect("a TCP key");
                seg.add(IPPROTO_TCP, p_from_a, &Seen::packet(frame, 1, 60, &p), 1);
            }
            shard.admit(&budget, key_hash(&key), key, seg);
        }
        let rank_of = |seg: &Segment| eviction_rank(seg);
        let live_ranks = |shard: &Shard| -> Vec<u64> {
            shard
                .slots
                .iter()
                .flatten()
                .map(|(_, s)| rank_of(s))
                .collect()
        };
        let classes: std::collections::BTreeSet<u64> =
            live_ranks(&shard).iter().map(|r| r >> 62).collect();
        assert_eq!(classes.len(), 3, "closed, single-packet and other flows");
        for n in [1, 7, 500, 1_000] {
            let mut before = live_ranks(&shard);
            before.sort_unstable();
            shard.out.flows = Leaving::default();
            shard.evict(n);
            let mut gone: Vec<u64> = shard.out.flows.iter().map(|f| rank_of(&f.seg)).collect();
            gone.sort_unstable();
            // Exactly the n lowest went, and the rest stayed, each still found by its key
            // and ranked as it is.
            assert_eq!(gone, before[..n], "{n}");
            assert_eq!(shard.len(), before.len() - n, "{n}");
            assert_eq!(live_ranks(&shard).len(), shard.len(), "{n}");
            for (i, slot) in shard.slots.iter().enumerate() {
                match slot {
                    Some((key, seg)) => {
                        assert_eq!(shard.find(key_hash(key), key), Some(i), "{n}");
                        assert_eq!(shard.ranks[i], rank_of(seg), "{n}");
                    }
                    None => assert_eq!(shard.ranks[i], u64::MAX, "{n}"),
                }
            }
            assert!(
                shard.out.flows.iter().all(|f| {
                    f.end == EndReason::Evicted && shard.find(key_hash(&f.key), &f.key).is_none()
                }),
                "{n}"
            );
        }
        assert_eq!(shard.out.evicted, 1 + 7 + 500 + 1_000);
        // New flows fill the freed slots, lowest first, before the slab grows.
        let slots = shard.slots.len();
        let lowest_free = shard.free.last().copied();
        for i in 0..1_508u16 {
            let (key, seg) = syn_flow(20_000 + i, 9_000);
            shard.admit(&budget, key_hash(&key), key, seg);
            if i == 0 {
                let first = shard.find(key_hash(&key), &key).map(|i| i as u32);
                assert_eq!(first, lowest_free);
            }
        }
        assert_eq!(shard.slots.len(), slots);
        assert!(shard.free.is_empty());
        assert_eq!(shard.len(), 3_000);
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

    /// A split capture whose time runs backwards at a range boundary: the first range ends at
    /// 400 s, the second (its worker sees only its own timestamps) holds a packet at 20 s, the
    /// third one at 410 s of the same flow. Read packet by packet, network time was 400 s at
    /// the second packet, so the flow was not idle at the third: one flow of two packets, not
    /// an idle flow that the merge's sweep at 400 s ended and a second one.
    #[test]
    fn a_range_whose_time_went_back_is_measured_from_the_earlier_ranges_latest() {
        let second = super::super::SECOND_NS;
        let flow = |src: u8, frame: u64, at: i64| {
            let p = tcp(src, 1000, 2, 80, ACK);
            let (key, from_a) = crate::flows::key_of(&p).expect("a TCP key");
            let ts = at * second;
            let seg = Segment::new(IPPROTO_TCP, from_a, &Seen::packet(frame, ts, 60, &p), ts);
            Flow {
                key,
                seg,
                end: EndReason::EndOfCapture,
            }
        };
        let mut table = FlowTable::new(FlowConfig::default(), Rows::Build);
        for (range, (src, frame, at)) in [(9, 1, 400), (3, 2, 20), (3, 3, 410)]
            .into_iter()
            .enumerate()
        {
            table.merge_part(flow(src, frame, at), true);
            table.range_done(Some(at * second));
            assert!(
                table.take_retired().iter().next().is_none(),
                "range {range}"
            );
        }
        let (flows, stats) = table.finish();
        assert_eq!(stats.flows, 2);
        let f = flows
            .iter()
            .find(|f| f.seg.first_frame == 2)
            .expect("the flow");
        assert_eq!((f.packets(), f.seg.last_frame), (2, 3));
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
