//! The ref cache at rest: what a server learnt of a repository's refs, by etag, kept beside
//! them (`.git/hypha-remote/ref-etags`), so that the first listing after a server starts does
//! not read every ref again.
//!
//! Each ref is an object of its own (Hypha's layout), and a server's [`ref_cache`] starts
//! empty: the first `refs` of a repository with 10,000 tags cost 10,000 `GET`s (79 waves of
//! 128 on S3), on every start of `git hypha serve` and of every Hypha worker's child. A
//! listing that had to read many refs writes what it now knows (each ref's etag and value),
//! and the first listing of a server that has not seen the repository reads that file beside
//! its `LIST` (a `HEAD`), then the file (one `GET`) only when the listing shows more unknown
//! refs than one wave of reads: the refs whose listed etag the file names are taken from it,
//! the others read as before. An etag names one body, so the file can be stale without being
//! wrong: a ref changed since has another etag and is read. Only listings with etags (S3)
//! write or use it.
//!
//! An update that wrote more than one wave of refs (a mirror push) writes it too, from its
//! own writes' etags, when this server's cache then knows every ref
//! ([`Repository::refresh_ref_snapshot`]).
//!
//! The file is read as hostile: at most [`SNAPSHOT_MAX`] bytes, every line checked (an etag
//! without spaces, an object id or `-`, a valid ref name); anything else and it is ignored
//! whole. Writing it is best effort, after the answer: a failure is a debug line.
//!
//! [`ref_cache`]: super::ref_cache

use super::Repository;
use crate::names::refname;
use crate::storage::PutMode;
use bytes::Bytes;

/// Largest snapshot read or written: about 150,000 refs.
pub const SNAPSHOT_MAX: u64 = 16 << 20;
/// First line of the file: its format.
const HEADER: &str = "hypha-ref-etags 1\n";
/// Longest etag kept (S3's are 34 characters, multipart ones a few more).
const MAX_ETAG: usize = 128;

/// One ref as the snapshot records it: name, etag (unquoted), object id (`None`: the body
/// named none).
pub(super) type Entry = (String, String, Option<String>);

impl Repository {
    fn ref_snapshot_key(&self) -> String {
        self.key("hypha-remote/ref-etags")
    }

    /// The snapshot's size, when there is one (`None` also when the store cannot say).
    pub(super) async fn ref_snapshot_size(&self) -> Option<u64> {
        self.backend
            .head(&self.ref_snapshot_key())
            .await
            .ok()
            .map(|meta| meta.size)
    }

    /// Puts the snapshot's entries (of `size` bytes, as `HEAD` said) into the ref cache; how
    /// many. 0 when it is too large, unreadable or malformed.
    pub(super) async fn seed_ref_cache(&self, size: u64) -> usize {
        let key = self.ref_snapshot_key();
        if size > SNAPSHOT_MAX {
            tracing::warn!("{key}: {size} bytes, more than {SNAPSHOT_MAX}: ignored");
            return 0;
        }
        let body = match self.backend.get(&key).await {
            // Replaced by a larger one since the `HEAD`: not read past the bound either.
            Ok(obj) if obj.body.len() as u64 <= SNAPSHOT_MAX => obj.body,
            Ok(_) => return 0,
            Err(e) => {
                tracing::debug!("{key}: cannot read the ref snapshot: {e}");
                return 0;
            }
        };
        let Some(entries) = decode(&body) else {
            tracing::warn!("{key}: not a ref snapshot this server writes: ignored");
            return 0;
        };
        for (name, etag, oid) in &entries {
            self.ref_cache.put(&self.key(name), etag, oid.clone());
        }
        entries.len()
    }

    /// Writes the snapshot of `entries` in the background (the listing's answer does not
    /// wait); best effort.
    pub(super) fn write_ref_snapshot(&self, entries: &[Entry]) {
        let body = encode(entries);
        if body.len() as u64 > SNAPSHOT_MAX {
            return;
        }
        let (backend, key) = (self.backend.clone(), self.ref_snapshot_key());
        tokio::spawn(async move {
            if let Err(e) = backend
                .put(&key, Bytes::from(body), PutMode::Overwrite)
                .await
            {
                tracing::debug!("{key}: cannot write the ref snapshot: {e}");
            }
        });
    }

    /// The snapshot's entries for `listed` (a listing's names and etags): every ref whose
    /// listed etag the ref cache knows.
    pub(super) fn snapshot_entries(&self, listed: Vec<(String, Option<String>)>) -> Vec<Entry> {
        listed
            .into_iter()
            .filter_map(|(name, etag)| {
                let etag = etag?;
                let oid = self.ref_cache.get(&self.key(&name), &etag)?;
                Some((name, etag, oid))
            })
            .collect()
    }

    /// After an update that wrote more refs than one wave reads (a mirror push into a new
    /// repository): the snapshot, written from a listing and the ref cache, which knows every
    /// ref the update wrote by the etag its write answered, so that the next server to start
    /// does not read them one by one. Only when the cache knows every listed ref (a server
    /// that never listed a large repository must not replace a fuller snapshot with what it
    /// wrote); in the background, after the answer (one `LIST` of the refs and one `PUT`);
    /// best effort.
    pub(super) fn refresh_ref_snapshot(&self) {
        let repo = self.clone();
        tokio::spawn(async move {
            let listed = match repo.listed_refs().await {
                Ok(listed) => listed,
                Err(e) => {
                    tracing::debug!("{}: cannot list refs for the ref snapshot: {e}", repo.name);
                    return;
                }
            };
            let with_etags = listed.iter().filter(|(_, etag)| etag.is_some()).count();
            let entries = repo.snapshot_entries(listed);
            if entries.len() == with_etags && entries.len() > super::REF_CONCURRENCY {
                repo.write_ref_snapshot(&entries);
            }
        });
    }
}

/// The file's bytes: [`HEADER`], then `<etag> <oid or -> <ref name>` a line.
pub(super) fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = HEADER.as_bytes().to_vec();
    for (name, etag, oid) in entries {
        let etag = etag.trim_matches('"');
        if etag.is_empty() || etag.len() > MAX_ETAG || etag.contains(char::is_whitespace) {
            continue;
        }
        let oid = oid.as_deref().unwrap_or("-");
        out.extend_from_slice(format!("{etag} {oid} {name}\n").as_bytes());
    }
    out
}

/// The entries of a file [`encode`] wrote; `None` for anything else (a wrong header, a line
/// that is not `<etag> <oid or -> <valid ref name>`, text that is not UTF-8).
pub(super) fn decode(bytes: &[u8]) -> Option<Vec<Entry>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let body = text.strip_prefix(HEADER)?;
    let mut entries = Vec::new();
    for line in body.lines() {
        let mut parts = line.splitn(3, ' ');
        let (etag, oid, name) = (parts.next()?, parts.next()?, parts.next()?);
        let etag_ok = !etag.is_empty() && etag.len() <= MAX_ETAG && !etag.contains('"');
        let oid = match oid {
            "-" => None,
            hex if crate::names::is_object_id(hex) => Some(hex.to_owned()),
            _ => return None,
        };
        if !etag_ok || !refname::is_valid(name) {
            return None;
        }
        entries.push((name.to_owned(), etag.to_owned(), oid));
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "1111111111111111111111111111111111111111";

    #[test]
    fn a_snapshot_round_trips_and_anything_else_is_refused() {
        let entries: Vec<Entry> = vec![
            ("refs/heads/main".into(), "\"abc\"".into(), Some(ONE.into())),
            ("refs/tags/v1".into(), "def-2".into(), None),
        ];
        let bytes = encode(&entries);
        let back = decode(&bytes).expect("decodes");
        assert_eq!(
            back,
            vec![
                (
                    "refs/heads/main".to_owned(),
                    "abc".to_owned(),
                    Some(ONE.to_owned())
                ),
                ("refs/tags/v1".to_owned(), "def-2".to_owned(), None),
            ]
        );
        assert_eq!(decode(HEADER.as_bytes()), Some(Vec::new()));
        for bad in [
            "".to_owned(),
            "hypha-ref-etags 2\n".to_owned(),
            format!("{HEADER}abc {ONE}\n"),
            format!("{HEADER}abc {ONE} refs/heads/../x\n"),
            format!("{HEADER}abc 12345 refs/heads/x\n"),
            format!("{HEADER} {ONE} refs/heads/x\n"),
            format!("{HEADER}a\"b {ONE} refs/heads/x\n"),
            format!("{HEADER}{} {ONE} refs/heads/x\n", "e".repeat(MAX_ETAG + 1)),
            format!("{HEADER}abc {ONE} HEAD\n"),
        ] {
            assert_eq!(decode(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(decode(b"hypha-ref-etags 1\n\xff\n"), None);
    }

    #[test]
    fn entries_without_a_usable_etag_are_left_out() {
        let entries: Vec<Entry> = vec![
            ("refs/heads/a".into(), "".into(), Some(ONE.into())),
            ("refs/heads/b".into(), "x y".into(), Some(ONE.into())),
            ("refs/heads/c".into(), "ok".into(), Some(ONE.into())),
        ];
        let back = decode(&encode(&entries)).expect("decodes");
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].0, "refs/heads/c");
    }
}
