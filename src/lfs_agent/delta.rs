//! A new version of a large object up as the byte ranges the server lacks (issue 22 part 4),
//! where the upload action says [`DELTA_CHUNKS`](crate::api::lfs::DELTA_CHUNKS):
//!
//! 1. pick bases the server may hold: other objects in `.git/lfs/objects` of a similar size,
//!    newest first (an earlier version of a file is usually there: it was checked out,
//!    committed or pulled before);
//! 2. cut the file into content-defined chunks (`lfs_chunks`, read once, 1 MiB at a time);
//! 3. `POST {href}/delta` with the chunk list and the bases: the server answers with the
//!    ranges of the file it needs and a presigned `PUT` for each, or with no plan;
//! 4. send the ranges the upload's `parallel` at a time ([`super::PARALLEL`] by default),
//!    then `POST {href}/delta/complete`: the server assembles the object from its bases and
//!    the ranges, and keeps it only if its SHA-256 is the oid.
//!
//! `Ok(None)` (no base, no plan) and any error leave the upload to the parts protocol
//! (`upload`), so a delta can cost time but never the object.

use super::upload::Object;
use super::{post_action, read_plan, Error, Session};
use crate::api::lfs::{DeltaComplete, DeltaPlan, DeltaRequest, MAX_DELTA_BASES, MAX_DELTA_RANGES};
use crate::api::PresignedRequest;
use crate::client::put_range;
use crate::lfs_chunks::{self, Chunker, MAX_CHUNKS};
use crate::progress::Bar;
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Largest plan read: [`MAX_DELTA_RANGES`] ranges of a few hundred bytes of URL each, with
/// room.
const MAX_PLAN: usize = 4 * 1024 * 1024;

/// Entries of `.git/lfs/objects` looked at when choosing bases.
const MAX_SCANNED: usize = 65_536;

/// Bytes read from the file at a time while chunking.
const READ: usize = 1024 * 1024;

/// The object's parts route (`href`) and the action's header for it.
#[derive(Debug, Clone, Copy)]
pub struct To<'a> {
    pub href: &'a str,
    pub header: &'a BTreeMap<String, String>,
}

/// What a delta sent: bytes in ranges, and the bytes the server took from its bases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub sent: u64,
    pub reused: u64,
    pub ranges: usize,
}

/// Send `object` as a delta through its parts route, `parallel` ranges at a time: `Some`
/// when the server holds it now, `None` when no delta applies.
pub async fn upload(
    session: &Session,
    object: &Object<'_>,
    to: To<'_>,
    parallel: usize,
    bar: &Bar,
) -> Result<Option<Sent>, Error> {
    let Object { oid, size, path } = *object;
    let To { href, header } = to;
    let lfs_objects = session.git_dir.join("lfs").join("objects");
    let own = oid.to_owned();
    let bases = tokio::task::spawn_blocking(move || candidates(&lfs_objects, &own, size))
        .await
        .map_err(|source| Error::Task {
            what: "choosing delta bases",
            source,
        })?;
    if bases.is_empty() {
        return Ok(None);
    }
    let file = path.to_owned();
    let chunks = tokio::task::spawn_blocking(move || chunk_file(&file))
        .await
        .map_err(|source| Error::Task {
            what: "chunking",
            source,
        })??;
    let Some((chunked, chunks)) = chunks else {
        return Ok(None);
    };
    if chunked != size {
        return Err(Error::Changed {
            path: path.to_owned(),
        });
    }
    // The server may index a base first (it reads the whole base once): allow it the time to
    // read one at 20 MB/s, with a minute to spare.
    let patience = Duration::from_secs(60 + size / (20 * 1024 * 1024));
    let api = session.http(href, Some(patience))?;
    use base64::Engine as _;
    let body = DeltaRequest {
        size,
        chunks: base64::engine::general_purpose::STANDARD.encode(&chunks),
        bases,
    };
    let url = format!("{href}/delta");
    let (what, refused) = ("lfs delta request", "lfs delta request refused");
    let resp = post_action(&api, &url, header, &body, what, refused).await?;
    let plan: DeltaPlan = read_plan(resp, MAX_PLAN, "lfs delta plan").await?;
    if plan.done {
        // The server had it already: nothing sent.
        return Ok(Some(Sent {
            sent: 0,
            reused: size,
            ranges: 0,
        }));
    }
    let Some(id) = plan.id.clone() else {
        return Ok(None);
    };
    check_plan(&plan, size)?;
    let sending: u64 = plan.ranges.iter().map(|r| r.len).sum();
    tracing::info!(
        "lfs object {oid}: sending {sending} of {size} bytes ({} ranges); the server has the rest",
        plan.ranges.len()
    );
    bar.inc(plan.reused);
    let store = session.http(plan.ranges.first().map_or(href, |r| r.href.as_str()), None)?;
    let failures: Vec<Error> = futures_util::stream::iter(&plan.ranges)
        .map(|range| {
            let store = &store;
            async move {
                let req = PresignedRequest {
                    method: "PUT".to_owned(),
                    url: range.href.clone(),
                    headers: range.header.clone(),
                };
                put_range(
                    store,
                    &req,
                    path,
                    (range.offset, range.len),
                    "lfs object range",
                    bar,
                )
                .await
                .map_err(|source| Error::Piece {
                    what: format!("range at {}", range.offset),
                    source,
                })
            }
        })
        .buffer_unordered(parallel.max(1))
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    if let Some(first) = failures.into_iter().next() {
        return Err(first);
    }
    let url = format!("{href}/delta/complete");
    let (what, refused) = ("lfs delta completion", "lfs delta refused");
    post_action(
        &api,
        &url,
        header,
        &DeltaComplete { size, id },
        what,
        refused,
    )
    .await?;
    Ok(Some(Sent {
        sent: sending,
        reused: plan.reused,
        ranges: plan.ranges.len(),
    }))
}

/// The plan's ranges lie within the object, in order, apart, and with the bytes the server
/// reuses make the whole object.
pub fn check_plan(plan: &DeltaPlan, size: u64) -> Result<(), Error> {
    let bad = |why: &'static str| Err(Error::BadPlan { plan: "delta", why });
    if plan.ranges.len() > MAX_DELTA_RANGES {
        return bad("too many ranges");
    }
    let mut end = 0u64;
    let mut sent = 0u64;
    for range in &plan.ranges {
        if range.len == 0 || range.offset < end {
            return bad("ranges overlap, are empty or out of order");
        }
        end = match range.offset.checked_add(range.len) {
            Some(e) if e <= size => e,
            _ => return bad("a range outside the object"),
        };
        sent += range.len;
    }
    if plan.reused.checked_add(sent) != Some(size) {
        return bad("sent and reused bytes do not make the object");
    }
    Ok(())
}

/// Up to [`MAX_DELTA_BASES`] other objects of `lfs_objects` (`aa/bb/{oid}`) between half and
/// twice `size`, newest first.
fn candidates(lfs_objects: &Path, oid: &str, size: u64) -> Vec<String> {
    let mut found: Vec<(SystemTime, String)> = Vec::new();
    let mut scanned = 0usize;
    let dirs = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    'outer: for a in dirs(lfs_objects) {
        for b in dirs(&a) {
            for object in dirs(&b) {
                scanned += 1;
                if scanned > MAX_SCANNED {
                    break 'outer;
                }
                let Some(name) = object.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if name == oid || !crate::names::is_lfs_oid(name) {
                    continue;
                }
                let Ok(meta) = std::fs::metadata(&object) else {
                    continue;
                };
                if meta.len() < size / 2 || meta.len() / 2 > size {
                    continue;
                }
                let when = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                found.push((when, name.to_owned()));
            }
        }
    }
    found.sort_by(|a, b| b.cmp(a));
    found
        .into_iter()
        .take(MAX_DELTA_BASES)
        .map(|(_, oid)| oid)
        .collect()
}

/// The size and encoded chunk list of the file at `path`; `None` past [`MAX_CHUNKS`].
fn chunk_file(path: &Path) -> Result<Option<(u64, Vec<u8>)>, Error> {
    use std::io::Read;
    let cannot_read = |source| Error::File {
        doing: "read",
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(cannot_read)?;
    let mut chunker = Chunker::new();
    let mut buf = vec![0u8; READ];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(cannot_read)?;
        if n == 0 {
            break;
        }
        chunker.feed(&buf[..n]);
        size += n as u64;
        if chunker.count() > MAX_CHUNKS {
            return Ok(None);
        }
    }
    let chunks = chunker.finish();
    if chunks.len() > MAX_CHUNKS {
        return Ok(None);
    }
    Ok(Some((size, lfs_chunks::encode(size, &chunks))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::lfs::DeltaRange;

    fn plan(ranges: &[(u64, u64)], reused: u64) -> DeltaPlan {
        DeltaPlan {
            done: false,
            id: Some("0".repeat(32)),
            ranges: ranges
                .iter()
                .map(|&(offset, len)| DeltaRange {
                    offset,
                    len,
                    href: "http://s/p".into(),
                    header: BTreeMap::new(),
                })
                .collect(),
            reused,
            expires_in: 60,
        }
    }

    #[test]
    fn plans_must_send_ranges_of_the_object_in_order() {
        assert!(check_plan(&plan(&[(10, 5), (20, 5)], 90), 100).is_ok());
        assert!(check_plan(&plan(&[], 100), 100).is_ok());
        assert!(check_plan(&plan(&[(10, 5), (12, 5)], 90), 100).is_err());
        assert!(check_plan(&plan(&[(20, 5), (10, 5)], 90), 100).is_err());
        assert!(check_plan(&plan(&[(98, 5)], 95), 100).is_err());
        assert!(check_plan(&plan(&[(10, 0)], 100), 100).is_err());
        assert!(check_plan(&plan(&[(10, 5)], 90), 100).is_err());
        assert!(check_plan(&plan(&[(u64::MAX, 2)], 0), 100).is_err());
        assert!(check_plan(&plan(&[(0, 5)], u64::MAX), 100).is_err());
    }

    #[test]
    fn bases_are_other_objects_of_a_similar_size_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let put = |oid: &str, len: usize| {
            let p = dir.path().join(&oid[..2]).join(&oid[2..4]);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join(oid), vec![0u8; len]).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        };
        let (a, b, c, d) = (
            "a".repeat(64),
            "b".repeat(64),
            "c".repeat(64),
            "d".repeat(64),
        );
        put(&a, 1000);
        put(&b, 100); // too small
        put(&c, 1500);
        put(&d, 1000); // the object itself
        assert_eq!(candidates(dir.path(), &d, 1000), [c, a]);
        assert!(candidates(&dir.path().join("none"), &d, 1000).is_empty());
    }
}
