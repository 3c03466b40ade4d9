//! Emptied buffers kept for reuse: allocated once per slot instead of once per use, on one
//! thread and freed on another, which the system allocator pays for in page faults and in
//! memory it does not give back.

use crossbeam_channel::{Receiver, Sender, bounded};

/// Something whose buffers can be emptied and filled again.
pub(crate) trait Reusable: Default {
    /// Bytes its buffers hold (their capacity, not their use).
    fn capacity_bytes(&self) -> usize;
    /// Empty it, keeping its buffers.
    fn clear(&mut self);
}

impl<T> Reusable for Vec<T> {
    fn capacity_bytes(&self) -> usize {
        self.capacity() * std::mem::size_of::<T>()
    }

    fn clear(&mut self) {
        Vec::clear(self);
    }
}

impl Reusable for crate::reader::Chunk {
    fn capacity_bytes(&self) -> usize {
        crate::reader::Chunk::capacity_bytes(self)
    }

    fn clear(&mut self) {
        crate::reader::Chunk::clear(self);
    }
}

/// Emptied `T`s: at most `slots` kept, none whose buffers grew past `max_bytes` (those are
/// dropped). Clones share the same spares.
#[derive(Clone)]
pub(crate) struct Spare<T> {
    give: Sender<T>,
    take: Receiver<T>,
    max_bytes: usize,
}

impl<T: Reusable> Spare<T> {
    pub(crate) fn new(slots: usize, max_bytes: usize) -> Self {
        let (give, take) = bounded(slots);
        Spare {
            give,
            take,
            max_bytes,
        }
    }

    /// Keep `x`, emptied, unless it is too big or the slots are full.
    pub(crate) fn give(&self, mut x: T) {
        if x.capacity_bytes() <= self.max_bytes {
            x.clear();
            // Full: drop it.
            let _ = self.give.try_send(x);
        }
    }

    /// A kept `T`, or a new one.
    pub(crate) fn take(&self) -> T {
        self.take.try_recv().unwrap_or_default()
    }

    /// How many are kept.
    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.take.len()
    }
}
