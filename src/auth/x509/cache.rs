//! The verified-chain cache of one [`CaBundle`](super::CaBundle): which presented chains already verified, for
//! whom, and until when that result may be reused.
//!
//! A connection's peer chain never changes and a cluster has only a few distinct client chains (the aggregator's
//! front-proxy certificate above all), yet every request is authenticated, so without this cache every request
//! pays for path building and ECDSA signature checks. This module only stores results: it must not verify, parse
//! certificates or decide trust; the bundle does that and inserts only successful verifications.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rustls_pki_types::{CertificateDer, UnixTime};
use sha2::{Digest, Sha256};

use super::Subject;

/// Most chains one bundle remembers. A cluster presents a handful of distinct chains (the aggregator's proxy
/// certificate, a few client certificates, old ones left behind by rotation until they expire); 1,024 leaves
/// ample room while bounding memory to roughly 1,024 × (digest + subject) even if many short-lived client
/// certificates pass through.
pub const CAPACITY: usize = 1024;

/// SHA-256 over a whole presented chain (every certificate, in order, each prefixed by its length), so another
/// leaf, another intermediate, another order or another split of the same bytes is another key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainDigest([u8; 32]);

/// The span in which every certificate of a verified path is within its validity period, both ends inclusive as
/// webpki checks them (`notBefore ≤ now ≤ notAfter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// The latest `notBefore` of the path.
    pub not_before: UnixTime,
    /// The earliest `notAfter` of the path.
    pub not_after: UnixTime,
}

/// Successful verifications by chain digest, shared by the clones of one bundle.
///
/// Eviction: when an insert finds the map full, entries no longer valid at `now` go first (rotation leaves old
/// certificates behind); if it is still full, the entry expiring soonest goes, as it would need re-verifying
/// soonest anyway. Both scans touch at most [`CAPACITY`] entries and happen only on an insert into a full map,
/// which takes that many distinct chains issued by a trusted CA: failures never get in.
#[derive(Debug)]
pub struct VerifiedChains {
    entries: Mutex<HashMap<ChainDigest, Entry>>,
    /// At least 1.
    capacity: usize,
    /// Full verifications (webpki path building) run by the bundle, successful or not; lets tests observe hits.
    #[cfg(test)]
    verifications: std::sync::atomic::AtomicUsize,
}

/// One cached verification.
#[derive(Debug)]
struct Entry {
    /// Shared so a hit clones a pointer under the lock and the strings after releasing it.
    subject: Arc<Subject>,
    validity: Validity,
}

// === impl ChainDigest ===

impl ChainDigest {
    /// The digest of `chain` (leaf first, DER).
    pub fn of(chain: &[CertificateDer<'_>]) -> Self {
        let mut hasher = Sha256::new();
        for certificate in chain {
            // The key is never persisted, so the platform's usize width is fine.
            hasher.update(certificate.len().to_be_bytes());
            hasher.update(certificate);
        }
        ChainDigest(hasher.finalize().into())
    }
}

// === impl Validity ===

impl Validity {
    /// Whether `now` lies within the span.
    pub fn contains(&self, now: UnixTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// The span within both `self` and `other` (empty, and so never containing an instant, if they are disjoint).
    pub fn intersect(self, other: Validity) -> Validity {
        Validity {
            not_before: self.not_before.max(other.not_before),
            not_after: self.not_after.min(other.not_after),
        }
    }
}

// === impl VerifiedChains ===

impl VerifiedChains {
    /// An empty cache holding at most [`CAPACITY`] chains.
    pub fn new() -> Self {
        Self::with_capacity(CAPACITY)
    }

    /// An empty cache holding at most `capacity` chains (at least 1).
    fn with_capacity(capacity: usize) -> Self {
        VerifiedChains {
            entries: Mutex::default(),
            capacity: capacity.max(1),
            #[cfg(test)]
            verifications: Default::default(),
        }
    }

    /// The subject of a chain verified earlier, if its path is still valid at `now`. A stale entry is dropped:
    /// the caller verifies again and the outcome, success or failure, is whatever webpki says at `now`.
    pub fn get(&self, digest: &ChainDigest, now: UnixTime) -> Option<Subject> {
        let mut entries = self.lock();
        let entry = entries.get(digest)?;
        if entry.validity.contains(now) {
            let subject = Arc::clone(&entry.subject);
            drop(entries);
            Some(Subject::clone(&subject))
        } else {
            entries.remove(digest);
            None
        }
    }

    /// Remembers a successful verification at `now`, evicting as the type documents when full.
    pub fn insert(&self, digest: ChainDigest, subject: Subject, validity: Validity, now: UnixTime) {
        let entry = Entry {
            subject: Arc::new(subject),
            validity,
        };
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&digest) {
            entries.retain(|_, entry| entry.validity.contains(now));
            if entries.len() >= self.capacity {
                let soonest = entries
                    .iter()
                    .min_by_key(|(_, entry)| entry.validity.not_after)
                    .map(|(digest, _)| *digest);
                if let Some(soonest) = soonest {
                    entries.remove(&soonest);
                }
            }
        }
        entries.insert(digest, entry);
    }

    /// The map; a panic while it was held cannot leave it inconsistent (every operation is a single map call),
    /// so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, HashMap<ChainDigest, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
impl VerifiedChains {
    /// Counts one full verification.
    pub fn count_verification(&self) {
        self.verifications
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Full verifications counted so far.
    pub fn verifications(&self) -> usize {
        self.verifications
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Chains currently cached.
    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(secs))
    }

    fn digest(id: u8) -> ChainDigest {
        ChainDigest([id; 32])
    }

    fn subject(id: u8) -> Subject {
        Subject {
            common_name: format!("user-{id}"),
            organizations: Vec::new(),
        }
    }

    fn valid_until(not_after: u64) -> Validity {
        Validity {
            not_before: at(0),
            not_after: at(not_after),
        }
    }

    #[test]
    fn a_full_cache_drops_stale_entries_first_then_the_one_expiring_soonest() {
        struct Case {
            name: &'static str,
            /// (id, notAfter) inserted in order at time 0.
            existing: &'static [(u8, u64)],
            /// (id, notAfter) inserted at `now`.
            insert: (u8, u64),
            now: u64,
            /// Ids cached afterwards, sorted.
            want: &'static [u8],
        }
        let cases = [
            Case {
                name: "below capacity every entry is kept",
                existing: &[(1, 100), (2, 200)],
                insert: (3, 300),
                now: 50,
                want: &[1, 2, 3],
            },
            Case {
                name: "a full cache drops every entry expired at now, and only those",
                existing: &[(1, 100), (2, 200), (3, 300)],
                insert: (4, 400),
                now: 250,
                want: &[3, 4],
            },
            Case {
                name: "a full cache of valid entries evicts the one expiring soonest",
                existing: &[(1, 300), (2, 100), (3, 200)],
                insert: (4, 400),
                now: 50,
                want: &[1, 3, 4],
            },
            Case {
                name: "replacing a cached chain evicts nothing",
                existing: &[(1, 100), (2, 200), (3, 300)],
                insert: (2, 250),
                now: 50,
                want: &[1, 2, 3],
            },
        ];
        for case in cases {
            let cache = VerifiedChains::with_capacity(3);
            for &(id, not_after) in case.existing {
                cache.insert(digest(id), subject(id), valid_until(not_after), at(0));
            }
            let (id, not_after) = case.insert;
            cache.insert(
                digest(id),
                subject(id),
                valid_until(not_after),
                at(case.now),
            );
            let mut got: Vec<u8> = cache.lock().keys().map(|digest| digest.0[0]).collect();
            got.sort_unstable();
            assert_eq!(got, case.want, "{}", case.name);
        }
    }

    #[test]
    fn an_entry_is_served_only_within_its_validity_and_dropped_outside_it() {
        let cases = [
            ("before notBefore", 9, None),
            ("at notBefore", 10, Some(subject(1))),
            ("at notAfter", 20, Some(subject(1))),
            ("after notAfter", 21, None),
        ];
        for (name, now, want) in cases {
            let cache = VerifiedChains::new();
            let validity = Validity {
                not_before: at(10),
                not_after: at(20),
            };
            cache.insert(digest(1), subject(1), validity, at(15));
            assert_eq!(cache.get(&digest(1), at(now)), want, "{name}");
            assert_eq!(cache.len(), usize::from(want.is_some()), "{name}: kept");
            assert_eq!(cache.get(&digest(2), at(15)), None, "{name}: other key");
        }
    }

    #[test]
    fn chain_digests_differ_for_any_other_certificate_order_or_split() {
        let der = |bytes: &'static [u8]| CertificateDer::from(bytes);
        let leaf_then_intermediate = ChainDigest::of(&[der(b"leaf"), der(b"intermediate")]);
        let cases = [
            ("another leaf", vec![der(b"leap"), der(b"intermediate")]),
            (
                "another intermediate",
                vec![der(b"leaf"), der(b"intermediatf")],
            ),
            (
                "the same certificates reversed",
                vec![der(b"intermediate"), der(b"leaf")],
            ),
            (
                "the same bytes as one certificate",
                vec![der(b"leafintermediate")],
            ),
            (
                "the same bytes split elsewhere",
                vec![der(b"leafi"), der(b"ntermediate")],
            ),
            ("the leaf alone", vec![der(b"leaf")]),
            (
                "an extra certificate",
                vec![der(b"leaf"), der(b"intermediate"), der(b"root")],
            ),
        ];
        for (name, chain) in cases {
            assert_ne!(ChainDigest::of(&chain), leaf_then_intermediate, "{name}");
        }
        assert_eq!(
            ChainDigest::of(&[der(b"leaf"), der(b"intermediate")]),
            leaf_then_intermediate,
            "the same chain in other buffers"
        );
    }
}
