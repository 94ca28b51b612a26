//! One LFS object up: a presigned `PUT` of the whole file, or (the action says
//! [`PARTS`]) the parts protocol of the server's `.../objects/parts/{oid}` route:
//!
//! 1. `POST {href}` with the size: the server answers with the parts still missing (all of
//!    them for a new upload; the rest of an upload cut earlier) and their presigned `PUT`s;
//! 2. the parts go up [`PARALLEL`] at a time, each streamed from its range of the file;
//! 3. `POST {href}/complete`: the server assembles the object and checks its SHA-256.
//!
//! Where the action also says [`DELTA_CHUNKS`], the agent first tries a delta
//! (`super::delta`): only the ranges the server's stored bases lack; no plan, or any error,
//! and it goes on with the parts above.
//!
//! A part that fails is not retried on its own URL: the next round asks the server again,
//! which lists what arrived and presigns the rest afresh (so an expired URL costs nothing
//! either), up to [`ROUNDS`] rounds. A rerun of the whole push does the same from the start.
//!
//! [`run`] takes the [`Object`], the batch answer's action and the caller's [`Options`], counts
//! bytes on the progress counter handed in, and says which way the object went ([`Outcome`]).

use super::{post_action, read_plan, Error, Session, PARALLEL};
use crate::api::lfs::{
    PartsComplete, PartsPlan, PartsRequest, DELTA_CHUNKS, DELTA_HEADER, PARTS, TRANSFER_HEADER,
};
use crate::api::PresignedRequest;
use crate::client::put_range;
use crate::progress::Bar;
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Rounds of asking the server what is missing and sending it.
const ROUNDS: usize = 4;

/// Largest parts plan read: 10,000 parts of a few hundred bytes of URL each, with room.
const MAX_PLAN: usize = 32 * 1024 * 1024;

/// Attempts at one whole-object `PUT`.
const PUT_ATTEMPTS: usize = 3;

/// The object git-lfs asks to send.
#[derive(Debug, Clone, Copy)]
pub struct Object<'a> {
    /// Its SHA-256, hex.
    pub oid: &'a str,
    /// Its size, as its pointer says.
    pub size: u64,
    /// The file holding it.
    pub path: &'a Path,
}

/// What the caller decides about an upload.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Parts or ranges in flight at once.
    pub parallel: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { parallel: PARALLEL }
    }
}

/// Which way the object went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// One presigned `PUT` of the whole object.
    Whole,
    /// Through the parts route: `sent` parts sent over `rounds` rounds (0 parts: the server
    /// had them all, from an earlier attempt or another push).
    Parts { sent: usize, rounds: usize },
    /// As a delta: `sent` bytes in `ranges` ranges; the server had the other `reused`.
    Delta {
        sent: u64,
        reused: u64,
        ranges: usize,
    },
}

/// Send `object` as `action` (the batch answer's) says, counting bytes on `bar`.
pub async fn run(
    session: &Session,
    object: &Object<'_>,
    action: &super::protocol::Action,
    options: &Options,
    bar: &Bar,
) -> Result<Outcome, Error> {
    let Object { oid, size, path } = *object;
    let on_disk = tokio::fs::metadata(path)
        .await
        .map_err(|source| Error::File {
            doing: "read",
            path: path.to_owned(),
            source,
        })?
        .len();
    if on_disk != size {
        return Err(Error::SizeMismatch {
            path: path.to_owned(),
            on_disk,
            size,
        });
    }
    let in_parts = action
        .header
        .get(TRANSFER_HEADER)
        .is_some_and(|v| v == PARTS);
    let by_delta = in_parts
        && action
            .header
            .get(DELTA_HEADER)
            .is_some_and(|v| v == DELTA_CHUNKS);
    let mut header = action.header.clone();
    header.remove(TRANSFER_HEADER);
    header.remove(DELTA_HEADER);
    if by_delta {
        let to = super::delta::To {
            href: &action.href,
            header: &header,
        };
        match super::delta::upload(session, object, to, options.parallel, bar).await {
            Ok(Some(sent)) => {
                return Ok(Outcome::Delta {
                    sent: sent.sent,
                    reused: sent.reused,
                    ranges: sent.ranges,
                })
            }
            Ok(None) => {}
            Err(e) => tracing::info!("lfs object {oid}: sending it whole: {}", e.one_line()),
        }
    }
    if in_parts {
        parts(session, object, &action.href, &header, options, bar).await
    } else {
        let http = session.http(&action.href, None)?;
        let put = PresignedRequest {
            method: "PUT".to_owned(),
            url: action.href.clone(),
            headers: header,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            match put_range(&http, &put, path, (0, size), "lfs object", bar).await {
                Ok(()) => return Ok(Outcome::Whole),
                Err(e) if attempt < PUT_ATTEMPTS && e.is_transient() => {
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                Err(e) => return Err(Error::Put(e)),
            }
        }
    }
}

async fn parts(
    session: &Session,
    object: &Object<'_>,
    href: &str,
    header: &BTreeMap<String, String>,
    options: &Options,
    bar: &Bar,
) -> Result<Outcome, Error> {
    let Object { oid, size, path } = *object;
    let api = session.http(href, None)?;
    let mut last_error = None;
    let mut sent = 0;
    for round in 0..ROUNDS {
        let plan = ask_plan(&api, href, header, size).await?;
        if plan.done {
            return Ok(Outcome::Parts {
                sent,
                rounds: round,
            });
        }
        let ranges = check_plan(&plan, size)?;
        let stored_bytes: u64 = plan
            .stored
            .iter()
            .filter_map(|n| ranges.get(n).map(|r| r.1))
            .sum();
        if round == 0 {
            bar.inc(stored_bytes);
        }
        let store = session.http(plan.parts.first().map_or(href, |p| p.href.as_str()), None)?;
        let failures: Vec<Error> = futures_util::stream::iter(&plan.parts)
            .map(|part| {
                let store = &store;
                let range = ranges[&part.number];
                async move {
                    let req = PresignedRequest {
                        method: "PUT".to_owned(),
                        url: part.href.clone(),
                        headers: part.header.clone(),
                    };
                    put_range(store, &req, path, range, "lfs object part", bar)
                        .await
                        .map_err(|source| Error::Piece {
                            what: format!("part {}", part.number),
                            source,
                        })
                }
            })
            .buffer_unordered(options.parallel.max(1))
            .filter_map(|r| async move { r.err() })
            .collect()
            .await;
        sent += plan.parts.len() - failures.len();
        let failed = failures.len();
        if let Some(first) = failures.into_iter().next() {
            tracing::debug!("lfs object {oid}: {failed} parts failed in round {round}");
            last_error = Some(first);
            continue;
        }
        finish(session, href, header, size, &plan).await?;
        return Ok(Outcome::Parts {
            sent,
            rounds: round + 1,
        });
    }
    Err(Error::Rounds {
        rounds: ROUNDS,
        last: last_error.map(Box::new),
    })
}

async fn ask_plan(
    api: &reqwest::Client,
    href: &str,
    header: &BTreeMap<String, String>,
    size: u64,
) -> Result<PartsPlan, Error> {
    let body = PartsRequest { size };
    let (what, refused) = ("lfs parts request", "lfs parts request refused");
    let resp = post_action(api, href, header, &body, what, refused).await?;
    read_plan(resp, MAX_PLAN, "lfs parts plan").await
}

/// Part number -> (offset, length) for every part of the object, after checking that the
/// plan's parts are parts of it.
fn check_plan(plan: &PartsPlan, size: u64) -> Result<BTreeMap<u32, (u64, u64)>, Error> {
    let bad = |why: &'static str| Err(Error::BadPlan { plan: "parts", why });
    if plan.part_size == 0 || (plan.upload_id.is_none() && plan.part_size != size) {
        return bad("part size");
    }
    let count = size.div_ceil(plan.part_size);
    if count > crate::storage::s3::multipart::MAX_PARTS {
        return bad("too many parts");
    }
    let mut ranges = BTreeMap::new();
    for n in 1..=count {
        let start = (n - 1) * plan.part_size;
        ranges.insert(n as u32, (start, plan.part_size.min(size - start)));
    }
    for part in &plan.parts {
        if !ranges.contains_key(&part.number) {
            return bad("a part outside the object");
        }
    }
    let named = plan.parts.len() + plan.stored.len();
    if named as u64 != count {
        return bad("parts missing from the plan");
    }
    Ok(ranges)
}

async fn finish(
    session: &Session,
    href: &str,
    header: &BTreeMap<String, String>,
    size: u64,
    plan: &PartsPlan,
) -> Result<(), Error> {
    // The server answers once it has assembled and hashed the object: allow it the time to
    // read it (at 20 MB/s, with a minute to spare), not the usual minute of silence.
    let patience = Duration::from_secs(60 + size / (20 * 1024 * 1024));
    let api = session.http(href, Some(patience))?;
    let body = PartsComplete {
        size,
        upload_id: plan.upload_id.clone(),
        part_size: plan.part_size,
    };
    let url = format!("{href}/complete");
    let (what, refused) = ("lfs upload completion", "lfs upload refused");
    post_action(&api, &url, header, &body, what, refused).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::lfs::PartUrl;

    fn plan(upload_id: Option<&str>, part_size: u64, parts: &[u32], stored: &[u32]) -> PartsPlan {
        PartsPlan {
            done: false,
            upload_id: upload_id.map(str::to_owned),
            part_size,
            parts: parts
                .iter()
                .map(|&number| PartUrl {
                    number,
                    href: "http://s/p".into(),
                    header: BTreeMap::new(),
                })
                .collect(),
            stored: stored.to_vec(),
            expires_in: 60,
        }
    }

    #[test]
    fn plans_must_cover_the_object_with_its_own_parts() {
        let ranges = check_plan(&plan(Some("u"), 10, &[1, 3], &[2]), 25).unwrap();
        assert_eq!(ranges[&1], (0, 10));
        assert_eq!(ranges[&3], (20, 5));
        assert!(check_plan(&plan(Some("u"), 10, &[1, 4], &[2]), 25).is_err());
        assert!(check_plan(&plan(Some("u"), 10, &[1], &[2]), 25).is_err());
        assert!(check_plan(&plan(Some("u"), 0, &[1], &[]), 25).is_err());
        assert!(check_plan(&plan(None, 25, &[1], &[]), 25).is_ok());
        assert!(check_plan(&plan(None, 10, &[1], &[]), 25).is_err());
        assert!(check_plan(&plan(Some("u"), 1, &[1], &[]), 1 << 40).is_err());
    }
}
