//! [`Labels`]: the compact, immutable label set of a node or pod, as held by the index and rendered in responses.
//!
//! Why not `BTreeMap<String, String>`: at 150,000 pods with per-pod label values (an HPA group label), label maps
//! were the largest live holder in a heap profile. A B-tree leaf is one ~540-byte allocation even for two pairs,
//! plus a heap `String` per key and value: ≈ 600 bytes per pod. Here a set is two boxed buffers:
//! - `text`: every key and value concatenated, pairs sorted by key (`"appapp-3hpah-123"`);
//! - `ends`: the end offset of each key and each value in `text` (`[3, 8, 11, 16]`).
//!
//! `{app: app-3, hpa: h-123}` then costs 16 + 16 heap bytes (plus the `Arc` the index wraps it in), and an empty
//! set allocates nothing. One buffer holding both offsets and text would save an allocation but needs either
//! `unsafe` or re-validating UTF-8 on every read; two boxes keep reads to plain slicing. Lookups binary-search
//! the keys (sets are small, and kept sorted so that iteration, equality and hashing are canonical).
//!
//! Offsets are `u32`: labels come from API objects, which etcd caps far below 4 GiB. This module must not parse
//! selectors or know about kube types; conversion from k8s-openapi maps happens in the watches.

use std::collections::BTreeMap;
use std::fmt;

/// An immutable set of label pairs, sorted by key, with unique keys (as a map).
///
/// Equal sets compare and hash equal, so the index can share one copy between pods.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels {
    /// Keys and values concatenated in key order.
    text: Box<str>,
    /// `ends[2i]` is the end of key `i` in `text`, `ends[2i + 1]` the end of its value.
    ends: Box<[u32]>,
}

/// Iterator over a [`Labels`] set in key order, yielding `(key, value)`.
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    labels: &'a Labels,
    next: usize,
}

// === impl Labels ===

impl Labels {
    /// The empty set (allocates nothing).
    pub fn new() -> Self {
        Labels::default()
    }

    /// Builds a set from pairs already sorted by key with unique keys.
    fn from_sorted<'a>(pairs: impl ExactSizeIterator<Item = (&'a str, &'a str)> + Clone) -> Self {
        let len: usize = pairs.clone().map(|(k, v)| k.len() + v.len()).sum();
        let mut text = String::with_capacity(len);
        let mut ends = Vec::with_capacity(pairs.len() * 2);
        for (key, value) in pairs {
            text.push_str(key);
            ends.push(offset(text.len()));
            text.push_str(value);
            ends.push(offset(text.len()));
        }
        Labels {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    /// The set has no pair.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        let mut low = 0;
        let mut high = self.len();
        while low < high {
            let mid = low + (high - low) / 2;
            let (k, v) = self.pair(mid);
            match k.cmp(key) {
                std::cmp::Ordering::Equal => return Some(v),
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
            }
        }
        None
    }

    /// The set has a pair with this key (whatever its value, including empty).
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Pairs in key order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            labels: self,
            next: 0,
        }
    }

    /// Pair `i` (`i < len()`).
    fn pair(&self, i: usize) -> (&str, &str) {
        let start = match i {
            0 => 0,
            _ => self.ends[2 * i - 1] as usize,
        };
        let key_end = self.ends[2 * i] as usize;
        let value_end = self.ends[2 * i + 1] as usize;
        // Offsets were taken after whole `str`s were appended, so they fall on char boundaries.
        (&self.text[start..key_end], &self.text[key_end..value_end])
    }
}

/// An offset into a label text as stored.
fn offset(len: usize) -> u32 {
    // Labels come from API objects (etcd rejects requests over a few MiB), so a label text over 4 GiB cannot exist.
    #[allow(clippy::expect_used)]
    u32::try_from(len).expect("a label set's text is shorter than 4 GiB")
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(map: BTreeMap<String, String>) -> Self {
        Labels::from(&map)
    }
}

impl From<&BTreeMap<String, String>> for Labels {
    fn from(map: &BTreeMap<String, String>) -> Self {
        Labels::from_sorted(map.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

/// Collects pairs in any order; when a key repeats, the last value wins (as inserting into a map).
impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Labels {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut pairs: Vec<(K, V)> = iter.into_iter().collect();
        // Stable, so equal keys keep their input order and the last one is the one to keep.
        pairs.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
        let mut unique: Vec<(&str, &str)> = Vec::with_capacity(pairs.len());
        for (key, value) in &pairs {
            match unique.last_mut() {
                Some(last) if last.0 == key.as_ref() => last.1 = value.as_ref(),
                _ => unique.push((key.as_ref(), value.as_ref())),
            }
        }
        Labels::from_sorted(unique.into_iter())
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a str, &'a str);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// A JSON object with keys in sorted order, as Go marshals a `map[string]string`.
impl serde::Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

// === impl Iter ===

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.labels.len() {
            return None;
        }
        let pair = self.labels.pair(self.next);
        self.next += 1;
        Some(pair)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.labels.len().saturating_sub(self.next);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

#[cfg(test)]
mod tests;
