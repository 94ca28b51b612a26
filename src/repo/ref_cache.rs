//! Ref values by etag, so that listing refs on S3 costs the `LIST` alone once refs are known.
//!
//! Hypha's layout keeps each ref in its own object, so `refs` is a `LIST` of `refs/` plus one
//! `GET` per ref: on s3s-fs, 10,000 tags took 31 s to list (55x `git daemon`). An S3 listing
//! carries each object's etag, and an etag names one body: a ref whose listed etag is one seen
//! before has the value read then, whoever wrote it since (this server, another, Hypha itself).
//! Only refs that are new or changed are read again, and none that this server wrote: `update`
//! puts each ref it writes in under the etag its write answered (a mirror push of 1,500 refs
//! was 1,500 `GET`s at the next listing). Listings without etags (local disk, which reads
//! every ref in one go anyway) bypass the cache.
//!
//! The cache is bounded: past [`MAX_ENTRIES`] it starts over, which costs one full read.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// About 150 bytes an entry: 200,000 refs over all repositories is some 30 MiB at most.
const MAX_ENTRIES: usize = 200_000;

#[derive(Debug, Default)]
pub(crate) struct RefCache {
    /// Full key -> (etag without quotes, the ref's object id; `None`: not a valid ref body).
    entries: Mutex<HashMap<String, (String, Option<String>)>>,
    /// Repositories (by prefix) this cache has listed since it last started over.
    listed: Mutex<HashSet<String>>,
}

impl RefCache {
    /// Whether this is the first listing of the repository at `prefix` since the cache
    /// (re)started: then it knows none of its refs ([`super::ref_snapshot`]).
    pub fn first_listing(&self, prefix: &str) -> bool {
        let Ok(mut listed) = self.listed.lock() else {
            return false;
        };
        if listed.len() >= MAX_ENTRIES {
            listed.clear();
        }
        listed.insert(prefix.to_owned())
    }

    /// The value last read for `key` with this `etag`, if any (`Some(None)`: the body seen
    /// then named no object).
    pub fn get(&self, key: &str, etag: &str) -> Option<Option<String>> {
        let entries = self.entries.lock().ok()?;
        let (known, oid) = entries.get(key)?;
        (known == unquoted(etag)).then(|| oid.clone())
    }

    /// Remember what `key` held when it had `etag`.
    pub fn put(&self, key: &str, etag: &str, oid: Option<String>) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(key) {
            entries.clear();
            // Every repository is unknown again.
            if let Ok(mut listed) = self.listed.lock() {
                listed.clear();
            }
        }
        entries.insert(key.to_owned(), (unquoted(etag).to_owned(), oid));
    }
}

/// S3 quotes etags in some answers and not in others.
fn unquoted(etag: &str) -> &str {
    etag.trim_matches('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_only_on_the_same_etag() {
        let cache = RefCache::default();
        assert_eq!(cache.get("k", "e1"), None);
        cache.put("k", "\"e1\"", Some("a".into()));
        assert_eq!(cache.get("k", "e1"), Some(Some("a".into())));
        assert_eq!(cache.get("k", "\"e1\""), Some(Some("a".into())));
        assert_eq!(cache.get("k", "e2"), None, "changed since");
        assert_eq!(cache.get("other", "e1"), None);
        cache.put("k", "e2", None);
        assert_eq!(cache.get("k", "e2"), Some(None));
        assert_eq!(cache.get("k", "e1"), None);
    }

    #[test]
    fn starts_over_when_full() {
        let cache = RefCache::default();
        for i in 0..MAX_ENTRIES {
            cache.put(&format!("k{i}"), "e", None);
        }
        cache.put("new", "e", Some("b".into()));
        assert_eq!(cache.get("k0", "e"), None);
        assert_eq!(cache.get("new", "e"), Some(Some("b".into())));
    }
}
