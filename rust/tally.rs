//! Hit counts per key, gathered in memory between writes to the index. Pure Rust.

use std::collections::HashMap;

/// How often each key was hit since the last `take`, and when last.
#[derive(Default)]
pub struct Tally {
    hits: HashMap<String, (u64, f64)>,
}

impl Tally {
    /// Counts `count` hits of `key`, the last at `last`; returns whether none were pending.
    pub fn add(&mut self, key: &str, count: u64, last: f64) -> bool {
        let first = self.hits.is_empty();
        if let Some(entry) = self.hits.get_mut(key) {
            entry.0 += count;
            if last > entry.1 {
                entry.1 = last;
            }
        } else {
            self.hits.insert(key.to_owned(), (count, last));
        }
        first
    }

    /// Drops the pending hits of `key`.
    pub fn discard(&mut self, key: &str) {
        self.hits.remove(key);
    }

    /// The pending hits, leaving none.
    pub fn take(&mut self) -> HashMap<String, (u64, f64)> {
        std::mem::take(&mut self.hits)
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.hits.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.hits.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_of_one_key_add_up_and_keep_the_latest_time() {
        let mut tally = Tally::default();
        assert!(tally.add("a", 1, 5.0));
        assert!(!tally.add("a", 2, 3.0));
        assert!(!tally.add("b", 1, 4.0));
        let taken = tally.take();
        assert_eq!(taken["a"], (3, 5.0));
        assert_eq!(taken["b"], (1, 4.0));
        assert!(tally.is_empty());
    }

    #[test]
    fn a_discarded_key_is_not_taken() {
        let mut tally = Tally::default();
        tally.add("a", 1, 1.0);
        tally.add("b", 1, 1.0);
        tally.discard("a");
        assert_eq!(tally.len(), 1);
        assert!(!tally.take().contains_key("a"));
    }
}
