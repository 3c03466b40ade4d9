//! A map that keeps its newest entries: the certificate cache and the message ids already seen.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// At most `cap` entries; inserting past that drops the oldest inserted.
pub(crate) struct Bounded<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
    cap: usize,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    pub(crate) fn new(cap: usize) -> Self {
        Bounded {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    pub(crate) fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    /// Insert `k` unless present; true if it was new.
    pub(crate) fn insert(&mut self, k: K, v: V) -> bool {
        if self.map.contains_key(&k) {
            return false;
        }
        self.map.insert(k.clone(), v);
        self.order.push_back(k);
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest() {
        let mut b = Bounded::new(2);
        assert!(b.insert(1, 'a'));
        assert!(!b.insert(1, 'x'));
        assert!(b.insert(2, 'b'));
        assert!(b.insert(3, 'c'));
        assert_eq!(
            (b.get(&1), b.get(&2), b.get(&3)),
            (None, Some(&'b'), Some(&'c'))
        );
        // A dropped key is new again.
        assert!(b.insert(1, 'd'));
    }
}
