//! One LFS object down, into `{git dir}/lfs/incomplete/{oid}.hypha`, which git-lfs then
//! checks (SHA-256) and moves into its store.
//!
//! An object up to [`RANGE`] bytes is one `GET`. A larger one is read in [`RANGE`]-sized
//! byte ranges of the presigned URL, [`PARALLEL`] at a time, each written at its offset and
//! synced; a line per finished range goes into `{oid}.hypha-ranges` beside the file. A
//! download that is cut (a dropped link, an expired URL, Ctrl-C) leaves both, and the next
//! attempt at the same object reads only the ranges not listed. The record names the size
//! and the range size it was made with: a record that does not match is started over.
//!
//! Every answer is checked against what was asked: a range must come back as a 206 of
//! exactly its length (a server sending more is cut off at the length), a whole object as
//! exactly `size` bytes.
//!
//! [`run`] takes the object, the batch answer's action and the caller's [`Options`], counts
//! bytes on the progress counter handed in, and says where the object is and what was read
//! ([`Outcome`]).

use super::{server_error, Error, Session, PARALLEL};
use crate::progress::Bar;
use futures_util::StreamExt;
use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

/// Bytes per range request.
pub const RANGE: u64 = 16 * 1024 * 1024;

/// What the caller decides about a download.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Ranges in flight at once.
    pub parallel: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { parallel: PARALLEL }
    }
}

/// What a download did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The file holding the object, for git-lfs to check and move into its store.
    pub path: PathBuf,
    /// Bytes read from the store now.
    pub bytes_read: u64,
    /// Bytes an earlier, cut attempt had read already (resumed, not read again).
    pub resumed: u64,
}

/// Read object `oid` (`size` bytes) from `action`'s presigned URL (the batch answer's) into
/// `.git/lfs/incomplete/`, counting bytes on `bar`.
pub async fn run(
    session: &Session,
    oid: &str,
    size: u64,
    action: &super::protocol::Action,
    options: &Options,
    bar: &Bar,
) -> Result<Outcome, Error> {
    if !crate::names::is_lfs_oid(oid) {
        return Err(Error::InvalidOid(crate::storage::shorten(oid)));
    }
    let dir = session.git_dir.join("lfs").join("incomplete");
    std::fs::create_dir_all(&dir).map_err(|source| Error::File {
        doing: "create",
        path: dir.clone(),
        source,
    })?;
    let file = dir.join(format!("{oid}.hypha"));
    let record = dir.join(format!("{oid}.hypha-ranges"));
    let http = session.http(&action.href, None)?;
    if size <= RANGE {
        whole(&http, action, &file, size, bar).await?;
        return Ok(Outcome {
            path: file,
            bytes_read: size,
            resumed: 0,
        });
    }
    let done = resume_point(&record, &file, size);
    if done.is_empty() {
        start_over(&file, &record, size)?;
    }
    let count = size.div_ceil(RANGE);
    let resumed = done.iter().map(|&i| range_of(i, size).1).sum();
    bar.inc(resumed);
    let log = std::sync::Mutex::new(
        std::fs::OpenOptions::new()
            .append(true)
            .open(&record)
            .map_err(|source| Error::File {
                doing: "open",
                path: record.clone(),
                source,
            })?,
    );
    let missing: Vec<u64> = (0..count).filter(|i| !done.contains(i)).collect();
    let failures: Vec<Error> = futures_util::stream::iter(missing)
        .map(|i| {
            let (http, file, log) = (&http, &file, &log);
            async move {
                let (start, len) = range_of(i, size);
                one_range(http, action, file, start, len, bar).await?;
                let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                writeln!(log, "{i}").map_err(|source| Error::Record { index: i, source })
            }
        })
        .buffer_unordered(options.parallel.max(1))
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    let failed = failures.len();
    if let Some(first) = failures.into_iter().next() {
        return Err(Error::Ranges {
            failed,
            count,
            kept: count - failed as u64,
            first: Box::new(first),
        });
    }
    let _ = std::fs::remove_file(&record);
    Ok(Outcome {
        path: file,
        bytes_read: size - resumed,
        resumed,
    })
}

/// Range `i` of an object of `size` bytes: (offset, length).
fn range_of(i: u64, size: u64) -> (u64, u64) {
    let start = i * RANGE;
    (start, RANGE.min(size - start))
}

/// The ranges an earlier attempt finished, from a record made for this size and range size
/// beside a file of the right length; empty when there is nothing to resume.
fn resume_point(record: &Path, file: &Path, size: u64) -> BTreeSet<u64> {
    let Ok(meta) = std::fs::metadata(file) else {
        return BTreeSet::new();
    };
    let Ok(text) = std::fs::File::open(record) else {
        return BTreeSet::new();
    };
    let mut lines = std::io::BufReader::new(text).lines();
    let header = format!("size {size} range {RANGE}");
    if meta.len() != size || lines.next().and_then(Result::ok).as_deref() != Some(&header) {
        return BTreeSet::new();
    }
    let count = size.div_ceil(RANGE);
    lines
        .map_while(Result::ok)
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .filter(|&i| i < count)
        .collect()
}

fn start_over(file: &Path, record: &Path, size: u64) -> Result<(), Error> {
    let f = std::fs::File::create(file).map_err(|source| file_error("create", file, source))?;
    f.set_len(size)
        .map_err(|source| file_error("size", file, source))?;
    std::fs::write(record, format!("size {size} range {RANGE}\n"))
        .map_err(|source| file_error("write", record, source))
}

fn file_error(doing: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::File {
        doing,
        path: path.to_owned(),
        source,
    }
}

async fn one_range(
    http: &reqwest::Client,
    action: &super::protocol::Action,
    file: &Path,
    start: u64,
    len: u64,
    bar: &Bar,
) -> Result<(), Error> {
    let last = start + len - 1;
    let mut req = http
        .get(&action.href)
        .header(reqwest::header::RANGE, format!("bytes={start}-{last}"));
    for (k, v) in &action.header {
        req = req.header(k, v);
    }
    let what = format!("range {start}-{last}");
    let resp = req.send().await.map_err(|e| Error::Send {
        what: what.clone(),
        source: e.without_url(),
    })?;
    if resp.status().as_u16() != 206 {
        return Err(server_error(&format!("{what}: the store did not answer 206"), resp).await);
    }
    let mut out = tokio::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .await
        .map_err(|source| file_error("open", file, source))?;
    out.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(|source| file_error("seek in", file, source))?;
    let got = copy_body(resp, &mut out, len, bar, &what).await?;
    if got != len {
        return Err(Error::Length {
            what,
            got,
            expected: len,
        });
    }
    out.sync_data()
        .await
        .map_err(|source| file_error("sync", file, source))
}

async fn whole(
    http: &reqwest::Client,
    action: &super::protocol::Action,
    file: &Path,
    size: u64,
    bar: &Bar,
) -> Result<(), Error> {
    let mut req = http.get(&action.href);
    for (k, v) in &action.header {
        req = req.header(k, v);
    }
    let resp = req.send().await.map_err(|e| Error::Send {
        what: "lfs download".to_owned(),
        source: e.without_url(),
    })?;
    if !resp.status().is_success() {
        return Err(server_error("lfs download refused", resp).await);
    }
    let mut out = tokio::fs::File::create(file)
        .await
        .map_err(|source| file_error("create", file, source))?;
    let got = copy_body(resp, &mut out, size, bar, "lfs object").await?;
    if got != size {
        return Err(Error::Length {
            what: "lfs object".to_owned(),
            got,
            expected: size,
        });
    }
    out.flush()
        .await
        .map_err(|source| file_error("write", file, source))
}

/// Copy at most `limit` bytes of the body into `out`; returns how many arrived (one more
/// than `limit` when the store sent too much: the caller refuses it).
async fn copy_body(
    resp: reqwest::Response,
    out: &mut tokio::fs::File,
    limit: u64,
    bar: &Bar,
    what: &str,
) -> Result<u64, Error> {
    let mut got = 0u64;
    let mut stream = resp.bytes_stream();
    let cannot_write = |source| Error::WriteBody {
        what: what.to_owned(),
        source,
    };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::Cut {
            what: what.to_owned(),
            source: e.without_url(),
        })?;
        let room = (limit - got) as usize;
        if chunk.len() > room {
            out.write_all(&chunk[..room]).await.map_err(cannot_write)?;
            return Ok(limit + 1);
        }
        out.write_all(&chunk).await.map_err(cannot_write)?;
        got += chunk.len() as u64;
        bar.inc(chunk.len() as u64);
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_resumes_only_the_download_it_was_made_for() {
        let dir = tempfile::tempdir().unwrap();
        let (file, record) = (dir.path().join("o"), dir.path().join("o.r"));
        let size = 3 * RANGE + 5;
        assert!(resume_point(&record, &file, size).is_empty());
        start_over(&file, &record, size).unwrap();
        assert!(resume_point(&record, &file, size).is_empty());
        std::fs::OpenOptions::new()
            .append(true)
            .open(&record)
            .unwrap()
            .write_all(b"0\n2\n9\ngarbage\n")
            .unwrap();
        assert_eq!(
            resume_point(&record, &file, size),
            BTreeSet::from([0, 2]),
            "out-of-range and unreadable lines are ignored"
        );
        // Another size: nothing carries over.
        assert!(resume_point(&record, &file, size + 1).is_empty());
        assert_eq!(range_of(3, size), (3 * RANGE, 5));
    }
}
