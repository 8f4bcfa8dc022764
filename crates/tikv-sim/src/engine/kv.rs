//! The store's key-value pairs (RawKV's default column family).

use std::collections::BTreeMap;
use std::ops::Bound;

/// An ordered map of all pairs on this store, whatever region they belong to. Ranges follow
/// region conventions: an empty end key means "to the end of the key space".
#[derive(Debug, Default)]
pub struct Kv {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    bytes: u64,
}

fn bounds<'a>(start: &'a [u8], end: &'a [u8]) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    let upper = if end.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Excluded(end)
    };
    (Bound::Included(start), upper)
}

/// Whether `[start, end)` is an empty range (an empty `end` is unbounded).
fn empty_range(start: &[u8], end: &[u8]) -> bool {
    !end.is_empty() && start >= end
}

impl Kv {
    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        let added = (key.len() + value.len()) as u64;
        if let Some(old) = self.map.insert(key.clone(), value) {
            self.bytes -= (key.len() + old.len()) as u64;
        }
        self.bytes += added;
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: &[u8]) {
        if let Some(old) = self.map.remove(key) {
            self.bytes -= (key.len() + old.len()) as u64;
        }
    }

    /// Removes every key in `[start, end)`.
    pub fn delete_range(&mut self, start: &[u8], end: &[u8]) {
        if empty_range(start, end) {
            return;
        }
        let keys: Vec<Vec<u8>> = self
            .map
            .range::<[u8], _>(bounds(start, end))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.delete(&k);
        }
    }

    /// Up to `limit` pairs of `[start, end)`, ascending, or descending when `reverse`.
    pub fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        if empty_range(start, end) {
            return Vec::new();
        }
        let range = self.map.range::<[u8], _>(bounds(start, end));
        let clone = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
        if reverse {
            range.rev().take(limit).map(clone).collect()
        } else {
            range.take(limit).map(clone).collect()
        }
    }

    /// Calls `f` on every pair of `[start, end)` in order.
    pub fn for_each(&self, start: &[u8], end: &[u8], mut f: impl FnMut(&[u8], &[u8])) {
        if empty_range(start, end) {
            return;
        }
        for (k, v) in self.map.range::<[u8], _>(bounds(start, end)) {
            f(k, v);
        }
    }

    /// Replaces everything in `[start, end)` with `pairs` (which must lie in that range).
    pub fn replace_range(&mut self, start: &[u8], end: &[u8], pairs: Vec<(Vec<u8>, Vec<u8>)>) {
        self.delete_range(start, end);
        for (k, v) in pairs {
            self.put(k, v);
        }
    }

    /// Size (keys plus values, in bytes) and number of keys in `[start, end)`.
    pub fn range_stats(&self, start: &[u8], end: &[u8]) -> (u64, u64) {
        let (mut size, mut keys) = (0, 0);
        self.for_each(start, end, |k, v| {
            size += (k.len() + v.len()) as u64;
            keys += 1;
        });
        (size, keys)
    }

    /// Keys that cut `[start, end)` into pieces of about `size` bytes or `keys` keys, whichever
    /// comes first (TiKV's split checker: the first key of each new piece).
    pub fn split_keys(
        &self,
        start: &[u8],
        end: &[u8],
        size: u64,
        keys: u64,
        max: usize,
    ) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let (mut s, mut n) = (0u64, 0u64);
        if empty_range(start, end) {
            return out;
        }
        for (k, v) in self.map.range::<[u8], _>(bounds(start, end)) {
            if (s >= size || n >= keys) && k.as_slice() > start {
                if out.len() == max {
                    break;
                }
                out.push(k.clone());
                (s, n) = (0, 0);
            }
            s += (k.len() + v.len()) as u64;
            n += 1;
        }
        out
    }

    /// Number of keys on the store.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the store holds no keys.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes of keys and values on the store.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Every pair, in order (for checkpoints).
    pub fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &Vec<u8>)> {
        self.map.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(keys: &[&str]) -> Kv {
        let mut kv = Kv::default();
        for k in keys {
            kv.put(k.as_bytes().to_vec(), b"v".to_vec());
        }
        kv
    }

    fn keys(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<String> {
        pairs
            .into_iter()
            .map(|(k, _)| String::from_utf8(k).unwrap())
            .collect()
    }

    #[test]
    fn scans_respect_bounds_limit_and_direction() {
        let kv = kv(&["a", "b", "c", "d"]);
        assert_eq!(keys(kv.scan(b"b", b"d", 10, false)), ["b", "c"]);
        assert_eq!(keys(kv.scan(b"b", b"", 10, false)), ["b", "c", "d"]);
        assert_eq!(keys(kv.scan(b"a", b"d", 2, true)), ["c", "b"]);
        assert!(kv.scan(b"c", b"b", 10, false).is_empty());
    }

    #[test]
    fn sizes_follow_puts_overwrites_and_deletes() {
        let mut kv = kv(&["a", "b"]);
        assert_eq!(kv.bytes(), 4);
        kv.put(b"a".to_vec(), b"vvv".to_vec());
        assert_eq!(kv.bytes(), 6);
        kv.delete_range(b"a", b"b");
        assert_eq!((kv.bytes(), kv.len()), (2, 1));
        assert_eq!(kv.range_stats(b"", b""), (2, 1));
    }

    #[test]
    fn split_keys_cut_by_keys_and_size() {
        let kv = kv(&["a", "b", "c", "d", "e"]);
        assert_eq!(
            kv.split_keys(b"", b"", u64::MAX, 2, 10),
            [b"c".to_vec(), b"e".to_vec()]
        );
        assert_eq!(kv.split_keys(b"", b"", 4, u64::MAX, 1), [b"c".to_vec()]);
        assert!(kv.split_keys(b"", b"", u64::MAX, 10, 10).is_empty());
        // The first key of the range is never a split key.
        assert!(kv.split_keys(b"a", b"b", 0, 0, 10).is_empty());
    }
}
