// pcaplab's patch (see `PATCHED.md`): this file is not in the published crate.

//! A direct-mapped cache of values recently interned in a dictionary and their keys, looked up
//! before the interner hashes a value: most values of a column repeat within a few rows, and a
//! hit costs a multiplication and a compare of a few words, where the interner hashes the
//! value's bytes, probes its table and compares the bytes with a call to `memcmp`.
//!
//! A value is cached by a fixed-size copy of it (a number's bits, a short byte string's words
//! and length, see [`ShortBytes`]) that is equal for two values exactly when their bytes are
//! equal, as the interner compares them; so a hit is the key the interner gave those same
//! bytes, and the dictionary and indices are the ones the published crate writes.

/// A dictionary key as an encoder buffers it until its data page is written: four bytes, not the
/// interner's eight (pcaplab's patch: up to 20,000 of them in each dictionary-encoded column, in
/// a buffer that keeps its largest size; as `u64` they were 9% of the heap peak converting DNS
/// traffic). A dictionary falls back to plain encoding once its page passes its size limit
/// (checked after each mini-batch of at most `write_batch_size` values), so it never holds
/// anywhere near 2^32 entries: each is at least one byte of the page, or four for the
/// fixed-width types.
#[inline(always)]
pub(crate) fn buffered_key(key: u64) -> u32 {
    debug_assert!(u32::try_from(key).is_ok(), "dictionary key {key} past u32");
    key as u32
}

/// Slots in a [`Recent`] cache.
const SLOTS: usize = 256;

/// Values recently interned (by a fixed-size copy `K`) and their dictionary keys plus one (0: an
/// empty slot), one per slot; a value's slot is the top byte of a multiplicative (Fibonacci)
/// hash of its `hash`, and a new value evicts the one in its slot. The slots are allocated on
/// first use.
#[derive(Debug, Default)]
pub(crate) struct Recent<K> {
    slots: Option<Box<[(K, u64); SLOTS]>>,
}

impl<K: Copy + Eq + Default> Recent<K> {
    /// The key of `value` (whose hash is `hash`): the cached one, or else `intern()`'s, which
    /// then takes the value's slot.
    #[inline(always)]
    pub(crate) fn key(&mut self, value: K, hash: u64, intern: impl FnOnce() -> u64) -> u64 {
        let slots = self
            .slots
            .get_or_insert_with(|| Box::new([(K::default(), 0); SLOTS]));
        let slot = &mut slots[(hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize];
        if slot.1 != 0 && slot.0 == value {
            return slot.1 - 1;
        }
        let key = intern();
        *slot = (value, key.wrapping_add(1));
        key
    }

    /// Bytes allocated.
    pub(crate) fn memory_size(&self) -> usize {
        self.slots.as_ref().map_or(0, |s| std::mem::size_of_val(&**s))
    }
}

/// A 4- or 8-byte value's bits (INT32, FLOAT, INT64, DOUBLE: one physical type per encoder, so
/// two widths never meet in one cache); their own hash.
#[inline(always)]
pub(crate) fn fixed_width_bits(bytes: &[u8]) -> u64 {
    match <[u8; 4]>::try_from(bytes) {
        Ok(b) => u64::from(u32::from_ne_bytes(b)),
        Err(_) => <[u8; 8]>::try_from(bytes).map_or(0, u64::from_ne_bytes),
    }
}

/// A byte string of at most [`ShortBytes::MAX`] bytes, as words read from its two ends (which
/// overlap when it is shorter than the words) and its length: together they hold every byte once
/// at least, so two strings have equal `ShortBytes` exactly when their bytes are equal.
#[derive(Clone, Copy, Debug, Default, Eq)]
pub(crate) struct ShortBytes {
    words: [u64; 4],
    len: u64,
}

impl PartialEq for ShortBytes {
    /// Word by word in registers: a derived comparison loads the words as vectors from where
    /// they were just stored one by one, which stalls the loads (store forwarding fails).
    #[inline(always)]
    fn eq(&self, other: &Self) -> bool {
        let [a, b, c, d] = self.words;
        let [e, f, g, h] = other.words;
        (a ^ e) | (b ^ f) | (c ^ g) | (d ^ h) | (self.len ^ other.len) == 0
    }
}

impl ShortBytes {
    /// The longest byte string cached.
    pub(crate) const MAX: usize = 32;

    /// `bytes` as `ShortBytes`, if at most [`ShortBytes::MAX`] long.
    #[inline(always)]
    pub(crate) fn new(bytes: &[u8]) -> Option<Self> {
        let u32_at = |b: Option<&[u8; 4]>| u64::from(b.map_or(0, |b| u32::from_le_bytes(*b)));
        let u64_at = |b: &[u8]| b.first_chunk().map_or(0, |b| u64::from_le_bytes(*b));
        let words = match bytes.len() {
            0..=3 => {
                // The first, middle and last byte hold all of at most three.
                let [first, middle, last] = match bytes {
                    [] => [0; 3],
                    &[a] => [a; 3],
                    &[a, b] => [a, b, b],
                    &[a, b, c, ..] => [a, b, c],
                };
                [u64::from(u32::from_le_bytes([first, middle, last, 0])), 0, 0, 0]
            }
            4..=8 => [
                u32_at(bytes.first_chunk()) | u32_at(bytes.last_chunk()) << 32,
                0,
                0,
                0,
            ],
            9..=16 => [
                u64_at(bytes),
                bytes.last_chunk::<8>().map_or(0, |b| u64::from_le_bytes(*b)),
                0,
                0,
            ],
            17..=Self::MAX => {
                let head = bytes.first_chunk::<16>().map_or(&[0; 16], |b| b);
                let tail = bytes.last_chunk::<16>().map_or(&[0; 16], |b| b);
                [u64_at(head), u64_at(&head[8..]), u64_at(tail), u64_at(&tail[8..])]
            }
            _ => return None,
        };
        Some(ShortBytes {
            words,
            len: bytes.len() as u64,
        })
    }

    /// A hash of the words and length, for [`Recent::key`].
    #[inline(always)]
    pub(crate) fn hash(&self) -> u64 {
        let [a, b, c, d] = self.words;
        a ^ b.rotate_left(19) ^ c.rotate_left(38) ^ d.rotate_left(51) ^ self.len
    }
}

