//! IP fragment reassembly with bounded memory, for IPv4 and IPv6 alike.
//!
//! The reassembler knows nothing of IP headers: the dissector hands it, for each fragment, a
//! datagram key (addresses, identification, protocol, ...), the fragment's byte offset, its
//! "more fragments" flag, its payload as captured and whether that payload is whole. It is fed
//! in file order by one thread and never panics, whatever it is given.
//!
//! Policy:
//!
//! - **Overlaps: first wins.** Bytes already received are kept; a later fragment only fills
//!   the holes. When a fragment covers bytes already received with *different* content, the
//!   datagram is flagged (`Reassembled::overlap`, counted once per datagram in
//!   `FragStats::overlaps`). Exact duplicates are harmless and count as fragments received.
//! - **Completion.** A datagram is complete when a last fragment (more fragments = 0) has
//!   arrived, every byte from 0 to its end is present, and every fragment received for it was
//!   whole. A fragment cut by the snap length is stored as far as it goes, but its datagram can
//!   then never complete (it ends as timed out, evicted or unfinished at the end of capture).
//!   A cut last fragment does not fix the datagram's end. Fragments with the more flag set need
//!   not carry a multiple of 8 bytes.
//! - **Invalid datagrams.** A fragment whose offset plus length exceeds 65,535 bytes of IP
//!   payload ("reassembled datagram over 65,535 bytes"), a second last fragment with another
//!   end, or data past the end a last fragment set ("inconsistent fragment lengths") makes the
//!   whole datagram invalid: it is dropped at once, with the offending fragment counted in it.
//!   Later fragments with the same key start a new datagram.
//! - **Timeouts.** An incomplete datagram whose first fragment arrived more than
//!   `FragConfig::timeout_ns` (capture time, default 30 s as Linux's `ipfrag_time`) before the
//!   current packet is dropped. Packets without a timestamp never time anything out, and a
//!   datagram whose first fragment had no timestamp never times out (it can still be evicted).
//! - **Memory.** Each incomplete datagram costs the allocated size of its reassembly buffer
//!   (which reaches from offset 0 to the highest byte received so far, holes included), plus the
//!   header bytes kept from its offset-0 fragment, plus 32 bytes per fragment received
//!   (duplicates included) and 128 bytes for the datagram itself. When the total would exceed
//!   `FragConfig::max_bytes` (default 8 MiB) after a fragment was stored, the oldest incomplete
//!   datagrams (first fragment earliest in file order) are dropped until it fits again; this
//!   may be the very datagram the fragment belongs to, which then ends as evicted too. A
//!   fragment that completes its datagram never causes an eviction.
//! - **Accounting.** Every datagram started ends exactly once: reassembled, invalid, timed out,
//!   evicted, or still incomplete at the end of capture. Timed-out and evicted datagrams are
//!   collected in the order they were given up and taken with [`Reassembler::take_expired`];
//!   [`Reassembler::finish`] returns the rest, oldest first.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::Hash;

/// Largest IP payload a reassembled datagram may have.
const MAX_PAYLOAD: u64 = 65_535;
/// Bytes charged per fragment received, for its share of the bookkeeping.
const FRAGMENT_OVERHEAD: usize = 32;
/// Bytes charged per incomplete datagram (table entry, queues, range list).
const DATAGRAM_OVERHEAD: usize = 128;
/// Most bytes of a datagram's start kept in [`Expired::head`].
const HEAD_LEN: usize = 64;

const TOO_LONG: &str = "reassembled datagram over 65,535 bytes";
const INCONSISTENT: &str = "inconsistent fragment lengths";

/// Reassembly limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragConfig {
    /// An incomplete datagram whose first fragment arrived longer ago than this (capture time)
    /// is dropped. Default 30 s (Linux's ipfrag_time).
    pub timeout_ns: i64,
    /// Most bytes held for incomplete datagrams: reassembly buffers and kept headers, plus 32
    /// bytes per fragment and 128 bytes per datagram; past it the oldest incomplete datagrams
    /// are dropped. Default 8 MiB.
    pub max_bytes: usize,
}

impl Default for FragConfig {
    fn default() -> Self {
        FragConfig {
            timeout_ns: 30_000_000_000,
            max_bytes: 8 << 20,
        }
    }
}

/// One fragment as the dissector found it.
#[derive(Clone, Copy, Debug)]
pub struct Fragment<'a> {
    /// Offset of `data` in the datagram's payload, in bytes (IPv4 offset field × 8).
    pub offset: u32,
    pub more: bool,
    /// The fragment's payload (after the IP header / fragment header), as captured.
    pub data: &'a [u8],
    /// Whether `data` is all of the fragment (not cut by the snap length). A cut fragment is
    /// stored as far as it goes but the datagram can then never complete.
    pub whole: bool,
    /// Only used for the offset-0 fragment: the bytes the caller needs to rebuild the
    /// datagram's header (kept as given, returned in `Reassembled::header`).
    pub header: &'a [u8],
}

/// Where a fragment's datagram stands after it was added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Added<K> {
    /// Waiting for more fragments. `first_frame` is the frame number of the datagram's first
    /// fragment in file order (the datagram's identity in the output). If the datagram had to
    /// be evicted to stay within the byte cap, its [`Expired`] is already in the list taken
    /// with [`Reassembler::take_expired`].
    Pending { first_frame: u64 },
    /// This fragment completed the datagram.
    Complete(Reassembled),
    /// The datagram was given up: it would exceed 65,535 bytes of IP payload (reason
    /// "reassembled datagram over 65,535 bytes") or its fragments disagree on its end (reason
    /// "inconsistent fragment lengths": a second last fragment with another end, or data past
    /// the end a last fragment set). Its fragments so far, this one included, are returned as
    /// an `Expired` with `Ended::Invalid` (the offending fragment's bytes are not stored, but
    /// when it is the first offset-0 fragment its start and header fill `head` and `header`).
    Invalid {
        first_frame: u64,
        reason: &'static str,
        expired: Expired<K>,
    },
}

/// A datagram put back together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reassembled {
    pub first_frame: u64,
    /// Fragments that went into it (including duplicates received), this one included.
    pub fragments: u32,
    /// Sum of the wire lengths of those fragments' frames.
    pub wire_bytes: u64,
    pub header: Vec<u8>,
    /// The whole datagram payload.
    pub payload: Vec<u8>,
    /// Some fragment overlapped bytes already received with different content (first-wins
    /// kept the earlier bytes).
    pub overlap: bool,
}

/// Why an incomplete datagram was given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Timeout,
    Evicted,
    EndOfCapture,
    Invalid,
}

/// An incomplete datagram given up on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expired<K> {
    pub key: K,
    pub first_frame: u64,
    pub fragments: u32,
    pub wire_bytes: u64,
    /// Capture time of the first fragment (i64::MIN if it had none).
    pub first_ts: i64,
    /// Latest capture time among the fragments (i64::MIN if none had one).
    pub last_ts: i64,
    pub ended: Ended,
    /// The contiguous bytes received from offset 0 on, at most 64 (enough for a transport
    /// header), and the offset-0 fragment's header; empty when the first fragment never came.
    pub head: Vec<u8>,
    pub header: Vec<u8>,
}

/// Reassembly counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FragStats {
    pub reassembled: u64,
    pub timed_out: u64,
    pub evicted: u64,
    pub invalid: u64,
    /// Datagrams still incomplete when the capture ended.
    pub incomplete: u64,
    /// Datagrams in which some fragment overlapped bytes already received with different
    /// content (counted once per datagram, whether it completed or not).
    pub overlaps: u64,
}

/// An incomplete datagram.
struct Datagram {
    /// Internal identity, increasing in file order (keys are reused by later datagrams).
    id: u64,
    first_frame: u64,
    first_ts: i64,
    last_ts: i64,
    fragments: u32,
    wire_bytes: u64,
    /// Bytes 0..len, of which only `ranges` were received.
    buf: Vec<u8>,
    /// Received byte ranges, half-open, sorted, neither overlapping nor touching.
    ranges: Vec<(u32, u32)>,
    /// The end a whole last fragment set.
    end: Option<u32>,
    /// Some fragment was cut by the snap length.
    cut: bool,
    overlap: bool,
    have_header: bool,
    header: Vec<u8>,
    /// What this datagram counts for in `held`.
    cost: usize,
}

impl Datagram {
    fn new(id: u64, frame: u64, ts: i64) -> Self {
        Datagram {
            id,
            first_frame: frame,
            first_ts: ts,
            last_ts: ts,
            fragments: 0,
            wire_bytes: 0,
            buf: Vec::new(),
            ranges: Vec::new(),
            end: None,
            cut: false,
            overlap: false,
            have_header: false,
            header: Vec::new(),
            cost: 0,
        }
    }

    /// Highest byte received so far (exclusive).
    fn received_end(&self) -> u32 {
        self.ranges.last().map_or(0, |r| r.1)
    }

    fn compute_cost(&self) -> usize {
        self.buf
            .capacity()
            .saturating_add(self.header.capacity())
            .saturating_add(FRAGMENT_OVERHEAD.saturating_mul(self.fragments as usize))
            .saturating_add(DATAGRAM_OVERHEAD)
    }

    fn is_complete(&self) -> bool {
        match self.end {
            Some(end) if !self.cut => end == 0 || self.ranges.as_slice() == [(0, end)],
            _ => false,
        }
    }

    /// Store `data` at `start` (whose end the caller checked to be at most 65,535), filling
    /// only the holes. Returns whether it differed from bytes already received.
    fn insert(&mut self, start: usize, data: &[u8]) -> bool {
        let end = start + data.len();
        if data.is_empty() {
            return false;
        }
        if self.buf.len() < end {
            self.buf.reserve_exact(end - self.buf.len());
            self.buf.resize(end, 0);
        }
        // Ranges overlapping or touching [start, end): from the first ending at or after
        // `start` to the last starting at or before `end`.
        let first = self.ranges.partition_point(|r| (r.1 as usize) < start);
        let mut last = first;
        let mut pos = start;
        let (mut merged_start, mut merged_end) = (start, end);
        let mut differ = false;
        while let Some(&(rs, re)) = self.ranges.get(last) {
            let (rs, re) = (rs as usize, re as usize);
            if rs > end {
                break;
            }
            if rs > pos {
                self.buf[pos..rs].copy_from_slice(&data[pos - start..rs - start]);
            }
            let (os, oe) = (rs.max(start), re.min(end));
            if os < oe && self.buf[os..oe] != data[os - start..oe - start] {
                differ = true;
            }
            pos = pos.max(re);
            merged_start = merged_start.min(rs);
            merged_end = merged_end.max(re);
            last += 1;
        }
        if pos < end {
            self.buf[pos..end].copy_from_slice(&data[pos - start..]);
        }
        // Both ends are at most 65,535 (checked by the caller, or taken from existing ranges).
        self.ranges
            .splice(first..last, [(merged_start as u32, merged_end as u32)]);
        differ
    }

    fn into_expired<K>(self, key: K, ended: Ended) -> Expired<K> {
        let head = match self.ranges.first() {
            Some(&(0, e)) => self.buf[..(e as usize).min(HEAD_LEN)].to_vec(),
            _ => Vec::new(),
        };
        Expired {
            key,
            first_frame: self.first_frame,
            fragments: self.fragments,
            wire_bytes: self.wire_bytes,
            first_ts: self.first_ts,
            last_ts: self.last_ts,
            ended,
            head,
            header: self.header,
        }
    }
}

/// A timeout queue entry: the datagram with key `key` and id `id` times out once a packet's
/// capture time is past `at`. Ordered so that `BinaryHeap` yields the earliest first.
struct Deadline<K> {
    at: i64,
    id: u64,
    key: K,
}

impl<K> PartialEq for Deadline<K> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.id) == (other.at, other.id)
    }
}

impl<K> Eq for Deadline<K> {}

impl<K> PartialOrd for Deadline<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> Ord for Deadline<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.id).cmp(&(self.at, self.id))
    }
}

/// Bounded-memory fragment reassembler; see the module documentation for the policy.
pub struct Reassembler<K> {
    cfg: FragConfig,
    table: HashMap<K, Datagram>,
    /// Every datagram in the table in file order of its first fragment, plus entries of
    /// datagrams already gone (skipped, and compacted away when they dominate).
    order: VecDeque<(u64, K)>,
    /// Timeouts of the datagrams whose first fragment had a timestamp, earliest first (capture
    /// times need not grow in file order); stale entries as in `order`.
    deadlines: BinaryHeap<Deadline<K>>,
    expired: Vec<Expired<K>>,
    held: usize,
    next_id: u64,
    stats: FragStats,
}

fn is_live<K: Hash + Eq>(table: &HashMap<K, Datagram>, key: &K, id: u64) -> bool {
    table.get(key).is_some_and(|d| d.id == id)
}

impl<K: Hash + Eq + Clone> Reassembler<K> {
    pub fn new(cfg: FragConfig) -> Self {
        Reassembler {
            cfg,
            table: HashMap::new(),
            order: VecDeque::new(),
            deadlines: BinaryHeap::new(),
            expired: Vec::new(),
            held: 0,
            next_id: 0,
            stats: FragStats::default(),
        }
    }

    /// Add a fragment of datagram `key` seen in frame `frame` (1-based, file order) at capture
    /// time `ts` (i64::MIN = no timestamp) with wire length `wire_len`. Before adding,
    /// datagrams that timed out relative to `ts` are expired; after storing the fragment,
    /// datagrams are evicted (oldest first) to stay within max_bytes; both kinds are pushed to
    /// an internal list taken with `take_expired`.
    pub fn add(
        &mut self,
        key: K,
        frame: u64,
        ts: i64,
        wire_len: u32,
        frag: Fragment<'_>,
    ) -> Added<K> {
        let added = self.add_inner(key, frame, ts, wire_len, frag);
        self.compact();
        added
    }

    fn add_inner(
        &mut self,
        key: K,
        frame: u64,
        ts: i64,
        wire_len: u32,
        frag: Fragment<'_>,
    ) -> Added<K> {
        self.advance(ts);

        let (order, deadlines, next_id) = (&mut self.order, &mut self.deadlines, &mut self.next_id);
        let timeout_ns = self.cfg.timeout_ns;
        let d = self.table.entry(key.clone()).or_insert_with(|| {
            let id = *next_id;
            *next_id = next_id.wrapping_add(1);
            order.push_back((id, key.clone()));
            if ts != i64::MIN {
                deadlines.push(Deadline {
                    at: ts.saturating_add(timeout_ns),
                    id,
                    key: key.clone(),
                });
            }
            Datagram::new(id, frame, ts)
        });
        d.fragments = d.fragments.saturating_add(1);
        d.wire_bytes = d.wire_bytes.saturating_add(u64::from(wire_len));
        d.last_ts = d.last_ts.max(ts);
        if !frag.whole {
            d.cut = true;
        }

        let frag_end = u64::from(frag.offset) + frag.data.len() as u64;
        let invalid = if frag_end > MAX_PAYLOAD {
            Some(TOO_LONG)
        } else {
            let frag_end = frag_end as u32;
            match d.end {
                // Data past the end a last fragment set, or a second end.
                Some(end) if frag_end > end || (!frag.more && frag.whole && frag_end != end) => {
                    Some(INCONSISTENT)
                }
                // A (whole) last fragment ending before data already received.
                None if !frag.more && frag.whole && frag_end < d.received_end() => {
                    Some(INCONSISTENT)
                }
                _ => None,
            }
        };
        if let Some(reason) = invalid {
            let first_frame = d.first_frame;
            let had_head = d.ranges.first().is_some_and(|r| r.0 == 0);
            let had_header = d.have_header;
            let d = self
                .remove(&key)
                .unwrap_or_else(|| Datagram::new(0, frame, ts));
            let mut expired = d.into_expired(key, Ended::Invalid);
            // The offending fragment is not stored, but its start may still tell the caller
            // what the datagram was.
            if frag.offset == 0 {
                if !had_head {
                    expired.head = frag.data[..frag.data.len().min(HEAD_LEN)].to_vec();
                }
                if !had_header {
                    expired.header = frag.header.to_vec();
                }
            }
            self.stats.invalid += 1;
            return Added::Invalid {
                first_frame,
                reason,
                expired,
            };
        }

        if frag.whole && !frag.more {
            d.end = Some(frag_end as u32);
        }
        if frag.offset == 0 && !d.have_header {
            d.have_header = true;
            d.header = frag.header.to_vec();
        }
        if d.insert(frag.offset as usize, frag.data) && !d.overlap {
            d.overlap = true;
            self.stats.overlaps += 1;
        }
        let first_frame = d.first_frame;

        if d.is_complete() {
            let Some(mut d) = self.remove(&key) else {
                return Added::Pending { first_frame };
            };
            self.stats.reassembled += 1;
            if let Some(end) = d.end {
                d.buf.truncate(end as usize);
            }
            return Added::Complete(Reassembled {
                first_frame,
                fragments: d.fragments,
                wire_bytes: d.wire_bytes,
                header: d.header,
                payload: d.buf,
                overlap: d.overlap,
            });
        }

        let cost = d.compute_cost();
        self.held = self.held.saturating_sub(d.cost).saturating_add(cost);
        d.cost = cost;
        self.evict();
        Added::Pending { first_frame }
    }

    /// Expire datagrams timed out at `ts` (the caller calls this for frames that are not
    /// fragments too, cheaply: O(1) when nothing is due). Does nothing for `i64::MIN`.
    pub fn advance(&mut self, ts: i64) {
        if ts == i64::MIN {
            return;
        }
        while self.deadlines.peek().is_some_and(|top| ts > top.at) {
            let Some(top) = self.deadlines.pop() else {
                break;
            };
            if is_live(&self.table, &top.key, top.id)
                && let Some(d) = self.remove(&top.key)
            {
                self.stats.timed_out += 1;
                self.expired.push(d.into_expired(top.key, Ended::Timeout));
            }
        }
    }

    /// Datagrams given up since the last call (timeouts and evictions), in the order they were
    /// given up.
    pub fn take_expired(&mut self) -> Vec<Expired<K>> {
        std::mem::take(&mut self.expired)
    }

    /// End of capture: every incomplete datagram, as `Ended::EndOfCapture`, oldest first.
    /// (Timeouts and evictions not yet taken stay for `take_expired`.)
    pub fn finish(&mut self) -> Vec<Expired<K>> {
        let mut out = Vec::with_capacity(self.table.len());
        while let Some((id, key)) = self.order.pop_front() {
            if is_live(&self.table, &key, id)
                && let Some(d) = self.remove(&key)
            {
                out.push(d.into_expired(key, Ended::EndOfCapture));
            }
        }
        self.stats.incomplete += out.len() as u64;
        // Every datagram is in `order`; this is only for safety.
        for (key, d) in self.table.drain() {
            out.push(d.into_expired(key, Ended::EndOfCapture));
            self.stats.incomplete += 1;
        }
        self.deadlines.clear();
        self.held = 0;
        out
    }

    /// Bytes held now (for tests and metrics).
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// Counters: datagrams reassembled, timed out, evicted, invalid, incomplete at the end,
    /// with overlaps.
    pub fn stats(&self) -> FragStats {
        self.stats
    }

    fn remove(&mut self, key: &K) -> Option<Datagram> {
        let d = self.table.remove(key)?;
        self.held = self.held.saturating_sub(d.cost);
        Some(d)
    }

    /// Drop the oldest datagrams until the held bytes fit the cap.
    fn evict(&mut self) {
        while self.held > self.cfg.max_bytes {
            let Some((id, key)) = self.order.pop_front() else {
                break;
            };
            if is_live(&self.table, &key, id)
                && let Some(d) = self.remove(&key)
            {
                self.stats.evicted += 1;
                self.expired.push(d.into_expired(key, Ended::Evicted));
            }
        }
    }

    /// Forget queue entries of datagrams already gone once they outnumber the live ones, so
    /// that the queues stay proportional to the table (amortised O(1) per datagram).
    fn compact(&mut self) {
        let limit = self.table.len().saturating_mul(2).saturating_add(64);
        let table = &self.table;
        if self.order.len() > limit {
            self.order.retain(|(id, key)| is_live(table, key, *id));
        }
        if self.deadlines.len() > limit {
            self.deadlines.retain(|e| is_live(table, &e.key, e.id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: i64 = 1_000_000_000;

    fn frag<'a>(offset: u32, more: bool, data: &'a [u8]) -> Fragment<'a> {
        Fragment {
            offset,
            more,
            data,
            whole: true,
            header: if offset == 0 { b"HDR" } else { b"" },
        }
    }

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    fn complete(a: Added<u32>) -> Reassembled {
        match a {
            Added::Complete(r) => r,
            other => panic!("not complete: {other:?}"),
        }
    }

    fn pending(a: Added<u32>) -> u64 {
        match a {
            Added::Pending { first_frame } => first_frame,
            other => panic!("not pending: {other:?}"),
        }
    }

    /// Split `p` into fragments of `unit` bytes: (offset, more, data).
    fn split(p: &[u8], unit: usize) -> Vec<(u32, bool, &[u8])> {
        let n = p.len().div_ceil(unit);
        p.chunks(unit)
            .enumerate()
            .map(|(i, c)| ((i * unit) as u32, i + 1 < n, c))
            .collect()
    }

    fn run_order(order: &[usize]) -> Reassembled {
        let p = payload(3000);
        let parts = split(&p, 1000);
        let mut r = Reassembler::new(FragConfig::default());
        let mut result = None;
        for (n, &i) in order.iter().enumerate() {
            let (off, more, data) = parts[i];
            let a = r.add(7, 10 + n as u64, S + n as i64, 1034, frag(off, more, data));
            if n + 1 < order.len() {
                assert_eq!(pending(a), 10);
                assert!(r.held_bytes() > 0);
            } else {
                result = Some(complete(a));
            }
        }
        assert_eq!(r.held_bytes(), 0);
        assert!(r.take_expired().is_empty());
        assert!(r.finish().is_empty());
        let res = result.expect("completed");
        assert_eq!(res.payload, p);
        res
    }

    #[test]
    fn in_order() {
        let res = run_order(&[0, 1, 2]);
        assert_eq!(
            (res.first_frame, res.fragments, res.wire_bytes),
            (10, 3, 3 * 1034)
        );
        assert_eq!(res.header, b"HDR");
        assert!(!res.overlap);
    }

    #[test]
    fn out_of_order_and_reversed() {
        assert_eq!(run_order(&[0, 2, 1]).header, b"HDR");
        assert_eq!(run_order(&[1, 0, 2]).fragments, 3);
        let res = run_order(&[2, 1, 0]);
        assert_eq!((res.first_frame, res.header.as_slice()), (10, &b"HDR"[..]));
    }

    #[test]
    fn duplicates_count_as_fragments() {
        let p = payload(2000);
        let mut r = Reassembler::new(FragConfig::default());
        pending(r.add(1, 1, S, 100, frag(0, true, &p[..1000])));
        pending(r.add(1, 2, S, 100, frag(0, true, &p[..1000])));
        pending(r.add(1, 3, S, 100, frag(0, true, &p[..1000])));
        let res = complete(r.add(1, 4, S, 100, frag(1000, false, &p[1000..])));
        assert_eq!(
            (res.fragments, res.wire_bytes, res.overlap),
            (4, 400, false)
        );
        assert_eq!(res.payload, p);
        assert_eq!(r.stats().overlaps, 0);
        // A duplicate after completion starts a new datagram.
        assert_eq!(
            pending(r.add(1, 5, S, 100, frag(1000, false, &p[1000..]))),
            5
        );
    }

    #[test]
    fn overlap_first_wins() {
        let mut r = Reassembler::new(FragConfig::default());
        pending(r.add(1, 1, S, 0, frag(0, true, &[b'a'; 16])));
        pending(r.add(1, 2, S, 0, frag(8, true, &[b'b'; 16])));
        let res = complete(r.add(1, 3, S, 0, frag(24, false, &[b'c'; 8])));
        let mut want = vec![b'a'; 16];
        want.extend_from_slice(&[b'b'; 8]);
        want.extend_from_slice(&[b'c'; 8]);
        assert_eq!(res.payload, want);
        assert!(res.overlap);
        assert_eq!(r.stats().overlaps, 1);

        // A fragment filling a hole between two ranges, overlapping both.
        pending(r.add(2, 4, S, 0, frag(0, true, &[b'a'; 8])));
        pending(r.add(2, 5, S, 0, frag(16, false, &[b'c'; 8])));
        let res = complete(r.add(2, 6, S, 0, frag(4, true, &[b'x'; 16])));
        let want = [[b'a'; 8], [b'x'; 8], [b'c'; 8]].concat();
        assert_eq!(res.payload, want);
        assert!(res.overlap);

        // Overlap with identical bytes is no overlap.
        let p = payload(24);
        pending(r.add(3, 7, S, 0, frag(0, true, &p[..16])));
        let res = complete(r.add(3, 8, S, 0, frag(8, false, &p[8..])));
        assert_eq!(res.payload, p);
        assert!(!res.overlap);
        assert_eq!(r.stats().overlaps, 2);
    }

    #[test]
    fn hole_never_filled_times_out() {
        let p = payload(3000);
        let cfg = FragConfig::default();
        let mut r = Reassembler::new(cfg);
        pending(r.add(1, 1, S, 1034, frag(0, true, &p[..1000])));
        pending(r.add(1, 2, S + 1, 1034, frag(2000, false, &p[2000..])));
        // Exactly the timeout later: not yet.
        r.advance(S + cfg.timeout_ns);
        assert!(r.take_expired().is_empty());
        r.advance(S + cfg.timeout_ns + 1);
        let e = r.take_expired();
        assert_eq!(e.len(), 1);
        let e = &e[0];
        assert_eq!(
            (e.key, e.first_frame, e.fragments, e.wire_bytes, e.ended),
            (1, 1, 2, 2068, Ended::Timeout)
        );
        assert_eq!((e.first_ts, e.last_ts), (S, S + 1));
        assert_eq!(e.head, &p[..64]);
        assert_eq!(e.header, b"HDR");
        assert_eq!(r.held_bytes(), 0);
        assert_eq!(r.stats().timed_out, 1);
        // A late fragment starts a new datagram.
        assert_eq!(
            pending(r.add(
                1,
                9,
                S + cfg.timeout_ns + 2,
                1034,
                frag(1000, true, &p[1000..2000])
            )),
            9
        );
    }

    #[test]
    fn hole_never_filled_end_of_capture() {
        let p = payload(3000);
        let mut r = Reassembler::new(FragConfig::default());
        pending(r.add(1, 1, S, 1, frag(1000, true, &p[1000..2000])));
        pending(r.add(2, 2, S, 1, frag(0, true, &p[..10])));
        pending(r.add(1, 3, S, 1, frag(2000, false, &p[2000..])));
        let e = r.finish();
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].key, e[0].first_frame, e[0].fragments), (1, 1, 2));
        assert_eq!(e[0].ended, Ended::EndOfCapture);
        // No first fragment: no head, no header.
        assert!(e[0].head.is_empty() && e[0].header.is_empty());
        assert_eq!((e[1].key, e[1].head.as_slice()), (2, &p[..10]));
        assert_eq!(r.held_bytes(), 0);
        assert!(r.finish().is_empty());
        assert_eq!(r.stats().incomplete, 2);
    }

    #[test]
    fn cut_fragment_never_completes() {
        let p = payload(2000);
        let mut r = Reassembler::new(FragConfig::default());
        let mut cut = frag(0, true, &p[..1000]);
        cut.whole = false;
        pending(r.add(1, 1, S, 1034, cut));
        // Its bytes arrive whole in a duplicate, and the rest too: still never complete.
        pending(r.add(1, 2, S, 1034, frag(0, true, &p[..1000])));
        pending(r.add(1, 3, S, 1034, frag(1000, false, &p[1000..])));
        let e = r.finish();
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].fragments, e[0].head.as_slice()), (3, &p[..64]));

        // A cut last fragment does not fix the end.
        let mut cut = frag(1000, false, &p[1000..1500]);
        cut.whole = false;
        pending(r.add(2, 4, S, 1034, cut));
        pending(r.add(2, 5, S, 1034, frag(0, true, &p[..1000])));
        pending(r.add(2, 6, S, 1034, frag(1000, false, &p[1000..])));
        assert_eq!(r.finish().len(), 1);
        assert_eq!(r.stats().invalid, 0);
    }

    #[test]
    fn interleaved_keys() {
        let a = payload(2500);
        let b: Vec<u8> = payload(1800).iter().map(|x| !x).collect();
        let mut r = Reassembler::new(FragConfig::default());
        pending(r.add(1, 1, S, 1, frag(0, true, &a[..1000])));
        pending(r.add(2, 2, S, 1, frag(1000, false, &b[1000..])));
        pending(r.add(1, 3, S, 1, frag(2000, false, &a[2000..])));
        let rb = complete(r.add(2, 4, S, 1, frag(0, true, &b[..1000])));
        let ra = complete(r.add(1, 5, S, 1, frag(1000, true, &a[1000..2000])));
        assert_eq!((ra.first_frame, ra.payload), (1, a));
        assert_eq!((rb.first_frame, rb.payload), (2, b));
        assert_eq!(r.stats().reassembled, 2);
    }

    #[test]
    fn over_65535() {
        let mut r = Reassembler::new(FragConfig::default());
        pending(r.add(1, 1, S, 1, frag(0, true, &[1; 64])));
        match r.add(1, 2, S, 1, frag(65528, false, &[0; 16])) {
            Added::Invalid {
                first_frame,
                reason,
                expired,
            } => {
                assert_eq!((first_frame, reason), (1, TOO_LONG));
                assert_eq!((expired.fragments, expired.ended), (2, Ended::Invalid));
                assert_eq!(expired.head, [1; 64]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.held_bytes(), 0);
        // Exactly 65,535 is fine.
        let p = payload(65_535);
        pending(r.add(1, 3, S, 1, frag(0, true, &p[..65_528])));
        assert_eq!(
            complete(r.add(1, 4, S, 1, frag(65_528, false, &p[65_528..]))).payload,
            p
        );
        // An offset overflowing u32 with the length.
        match r.add(5, 6, S, 1, frag(u32::MAX, true, &[0; 8])) {
            Added::Invalid {
                first_frame,
                reason,
                expired,
            } => {
                assert_eq!((first_frame, reason, expired.fragments), (6, TOO_LONG, 1));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.stats().invalid, 2);
        assert_eq!(r.held_bytes(), 0);
        assert!(r.finish().is_empty());
    }

    fn invalid_reason(a: Added<u32>) -> &'static str {
        match a {
            Added::Invalid {
                reason, expired, ..
            } => {
                assert_eq!(expired.ended, Ended::Invalid);
                reason
            }
            other => panic!("not invalid: {other:?}"),
        }
    }

    #[test]
    fn inconsistent_ends() {
        let mut r = Reassembler::new(FragConfig::default());
        // Two last fragments with different ends.
        pending(r.add(1, 1, S, 1, frag(1000, false, &[0; 100])));
        assert_eq!(
            invalid_reason(r.add(1, 2, S, 1, frag(1000, false, &[0; 200]))),
            INCONSISTENT
        );
        // Data past the end.
        pending(r.add(2, 3, S, 1, frag(1000, false, &[0; 100])));
        assert_eq!(
            invalid_reason(r.add(2, 4, S, 1, frag(1096, true, &[0; 8]))),
            INCONSISTENT
        );
        // A last fragment ending before data already received.
        pending(r.add(3, 5, S, 1, frag(2000, true, &[0; 100])));
        assert_eq!(
            invalid_reason(r.add(3, 6, S, 1, frag(1000, false, &[0; 100]))),
            INCONSISTENT
        );
        // A more-fragments fragment ending exactly at the end is fine, and so is a repeated
        // last fragment.
        pending(r.add(4, 7, S, 1, frag(8, false, &[0; 8])));
        pending(r.add(4, 8, S, 1, frag(8, false, &[0; 8])));
        complete(r.add(4, 9, S, 1, frag(0, true, &[0; 16])));
        assert_eq!(r.stats().invalid, 3);
        assert_eq!(r.held_bytes(), 0);
        // The fragments after an invalid datagram start a new one.
        pending(r.add(1, 10, S, 1, frag(0, true, &[0; 8])));
        assert_eq!(r.finish().len(), 1);
    }

    #[test]
    fn eviction_oldest_first() {
        let one = 1000 + FRAGMENT_OVERHEAD + DATAGRAM_OVERHEAD + 3;
        let cfg = FragConfig {
            max_bytes: 3 * one,
            ..FragConfig::default()
        };
        let mut r = Reassembler::new(cfg);
        let data = [9u8; 1000];
        for k in 0..3u32 {
            pending(r.add(k, u64::from(k) + 1, S, 1, frag(0, true, &data)));
            assert_eq!(r.held_bytes(), (k as usize + 1) * one);
        }
        assert!(r.take_expired().is_empty());
        // A fourth datagram pushes out the first.
        pending(r.add(3, 4, S, 1, frag(0, true, &data)));
        assert!(r.held_bytes() <= cfg.max_bytes);
        let e = r.take_expired();
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].key, e[0].first_frame, e[0].ended),
            (0, 1, Ended::Evicted)
        );
        // Growing the (now) oldest datagram evicts it itself.
        pending(r.add(1, 5, S, 1, frag(1000, true, &data)));
        assert!(r.held_bytes() <= cfg.max_bytes);
        let e = r.take_expired();
        assert_eq!(
            e.iter().map(|e| (e.key, e.fragments)).collect::<Vec<_>>(),
            [(1, 2)]
        );
        // A completing fragment evicts nothing.
        complete(r.add(2, 6, S, 1, frag(1000, false, &data)));
        assert!(r.take_expired().is_empty());
        assert_eq!(r.stats().evicted, 2);
        // A fragment too big for the cap on its own.
        let big = vec![0u8; 4 * one];
        pending(r.add(9, 7, S, 1, frag(0, true, &big)));
        assert!(r.held_bytes() <= cfg.max_bytes);
        let e = r.take_expired();
        assert_eq!(
            e.iter().map(|e| e.key).collect::<Vec<_>>(),
            [3, 9],
            "oldest first"
        );
        assert_eq!(r.held_bytes(), 0);
    }

    #[test]
    fn timeouts_with_and_without_timestamps() {
        let cfg = FragConfig {
            timeout_ns: 10 * S,
            ..FragConfig::default()
        };
        let mut r = Reassembler::new(cfg);
        // No timestamp on the first fragment: never times out.
        pending(r.add(1, 1, i64::MIN, 1, frag(0, true, &[0; 8])));
        // Timestamped, then packets without a timestamp: nothing happens.
        pending(r.add(2, 2, S, 1, frag(0, true, &[0; 8])));
        r.advance(i64::MIN);
        pending(r.add(3, 3, i64::MIN, 1, frag(0, true, &[0; 8])));
        assert!(r.take_expired().is_empty());
        // Later timestamps: only datagram 2 times out, from its first fragment's time even
        // though a later fragment came.
        pending(r.add(2, 4, 5 * S, 1, frag(8, true, &[0; 8])));
        r.advance(11 * S);
        assert!(r.take_expired().is_empty());
        r.advance(11 * S + 1);
        let e = r.take_expired();
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].key, e[0].fragments, e[0].ended),
            (2, 2, Ended::Timeout)
        );
        r.advance(i64::MAX);
        assert!(r.take_expired().is_empty());
        // Capture times going backwards in file order: each datagram times out on its own.
        pending(r.add(4, 5, 100 * S, 1, frag(0, true, &[0; 8])));
        pending(r.add(5, 6, 50 * S, 1, frag(0, true, &[0; 8])));
        r.advance(61 * S);
        let e = r.take_expired();
        assert_eq!(e.iter().map(|e| e.key).collect::<Vec<_>>(), [5]);
        // A timestamped add expires before adding.
        pending(r.add(7, 7, 111 * S, 1, frag(0, true, &[0; 8])));
        assert_eq!(
            r.take_expired().iter().map(|e| e.key).collect::<Vec<_>>(),
            [4]
        );
        let f = r.finish();
        assert_eq!(f.iter().map(|e| e.key).collect::<Vec<_>>(), [1, 3, 7]);
        assert_eq!(r.stats().timed_out, 3);
    }

    #[test]
    fn fragment_flood() {
        const N: u64 = 100_000;
        let cfg = FragConfig {
            max_bytes: 1 << 20,
            ..FragConfig::default()
        };
        let mut r = Reassembler::new(cfg);
        let mut seen = vec![0u8; N as usize + 1];
        fn count(seen: &mut [u8], frame: u64) {
            seen[frame as usize] += 1;
        }
        let data = [0x5a; 200];
        for i in 1..=N {
            let key = i as u32;
            let ts = S + i as i64 * 1000;
            match r.add(key, i, ts, 234, frag(0, true, &data)) {
                Added::Pending { first_frame } => assert_eq!(first_frame, i),
                other => panic!("{other:?}"),
            }
            // Every tenth completes with a second fragment at once.
            if i % 10 == 0 {
                let res = complete(r.add(key, i, ts, 234, frag(200, false, &data)));
                count(&mut seen, res.first_frame);
            }
            assert!(r.held_bytes() <= cfg.max_bytes);
            // The queues stay proportional to the table.
            assert!(r.order.len() <= 2 * r.table.len() + 65);
            assert!(r.deadlines.len() <= 2 * r.table.len() + 65);
            for e in r.take_expired() {
                assert_eq!(e.ended, Ended::Evicted);
                count(&mut seen, e.first_frame);
            }
        }
        for e in r.finish() {
            count(&mut seen, e.first_frame);
        }
        assert!(seen[1..].iter().all(|&n| n == 1), "each datagram ends once");
        let s = r.stats();
        assert_eq!(s.reassembled, N / 10);
        assert!(s.evicted > 0);
        assert_eq!(s.evicted + s.timed_out + s.incomplete, N - N / 10);
        assert_eq!(r.held_bytes(), 0);
    }

    #[derive(Clone, Debug)]
    struct Op {
        key: u8,
        offset: u32,
        more: bool,
        len: usize,
        whole: bool,
        fill: u8,
        ts: Option<i64>,
    }

    fn op() -> impl Strategy<Value = Op> {
        (
            0u8..4,
            prop_oneof![4 => 0u32..70_000, 1 => (0u32..9000).prop_map(|o| o * 8), 1 => any::<u32>()],
            any::<bool>(),
            prop_oneof![0usize..64, 0usize..3000],
            prop_oneof![4 => Just(true), 1 => Just(false)],
            0u8..3,
            prop_oneof![4 => (0i64..100).prop_map(|t| Some(t * S)), 1 => Just(None)],
        )
            .prop_map(|(key, offset, more, len, whole, fill, ts)| Op {
                key,
                offset,
                more,
                len,
                whole,
                fill,
                ts,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_fragments_never_panic(
            ops in proptest::collection::vec(op(), 0..200),
            max_bytes in prop_oneof![0usize..20_000, Just(8usize << 20)],
            timeout_ns in prop_oneof![Just(30 * S), -S..100 * S],
        ) {
            let cfg = FragConfig { timeout_ns, max_bytes };
            let mut r = Reassembler::new(cfg);
            let mut ended = 0u64;
            let buf = [0u8; 3000];
            let mut data = [0u8; 3000];
            for (n, o) in ops.iter().enumerate() {
                data.iter_mut().enumerate().for_each(|(i, b)| *b = (i as u8) ^ o.fill);
                let f = Fragment {
                    offset: o.offset,
                    more: o.more,
                    data: &data[..o.len],
                    whole: o.whole,
                    header: &buf[..o.len % 40],
                };
                let ts = o.ts.unwrap_or(i64::MIN);
                match r.add(o.key, n as u64 + 1, ts, o.len as u32, f) {
                    Added::Pending { first_frame } => prop_assert!(first_frame <= n as u64 + 1),
                    Added::Complete(res) => {
                        ended += 1;
                        prop_assert!(res.fragments >= 1);
                        prop_assert!(res.payload.len() <= 65_535);
                    }
                    Added::Invalid { expired, .. } => {
                        ended += 1;
                        prop_assert!(expired.head.len() <= HEAD_LEN);
                    }
                }
                prop_assert!(r.held_bytes() <= max_bytes);
                if n % 7 == 0 {
                    r.advance(ts.saturating_add(S));
                    prop_assert!(r.held_bytes() <= max_bytes);
                }
                for e in r.take_expired() {
                    prop_assert!(matches!(e.ended, Ended::Timeout | Ended::Evicted));
                    prop_assert!(e.fragments >= 1 && e.head.len() <= HEAD_LEN);
                    ended += 1;
                }
            }
            ended += r.finish().len() as u64;
            prop_assert_eq!(r.held_bytes(), 0);
            // Every datagram started ended exactly once.
            prop_assert_eq!(ended, r.next_id);
            let s = r.stats();
            prop_assert!(s.reassembled + s.invalid + s.timed_out + s.evicted <= ended);
        }

        #[test]
        fn shuffled_datagram_reassembles(
            (p, unit, order, dups) in (proptest::collection::vec(any::<u8>(), 1..5000), 1usize..200)
                .prop_flat_map(|(p, unit)| {
                    let n = p.len().div_ceil(unit * 8);
                    (
                        Just(p),
                        Just(unit * 8),
                        Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
                        proptest::collection::vec(0..n, 0..4),
                    )
                })
        ) {
            let parts = split(&p, unit);
            let mut r = Reassembler::new(FragConfig::default());
            // Duplicates first (not of the fragment that will complete it), then every
            // fragment once in random order.
            let last = order.last().copied();
            let seq: Vec<usize> = dups
                .iter()
                .filter(|&&d| Some(d) != last)
                .chain(order.iter())
                .copied()
                .collect();
            let mut done = None;
            for (n, &i) in seq.iter().enumerate() {
                let (off, more, data) = parts[i];
                match r.add(0u32, n as u64 + 1, S, 1, frag(off, more, data)) {
                    Added::Pending { first_frame } => {
                        prop_assert!(n + 1 < seq.len());
                        prop_assert_eq!(first_frame, 1);
                    }
                    Added::Complete(res) => {
                        prop_assert_eq!(n + 1, seq.len());
                        done = Some(res);
                    }
                    Added::Invalid { reason, .. } => prop_assert!(false, "invalid: {}", reason),
                }
            }
            let res = done.expect("complete");
            prop_assert_eq!(&res.payload, &p);
            prop_assert_eq!(res.fragments as usize, seq.len());
            prop_assert!(!res.overlap);
            prop_assert_eq!(res.header.as_slice(), b"HDR");
            prop_assert_eq!(r.held_bytes(), 0);
        }
    }
}
