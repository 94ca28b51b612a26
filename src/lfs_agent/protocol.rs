//! git-lfs's custom transfer protocol (git-lfs `docs/custom-transfers.md`): one JSON object
//! per line on stdin (requests) and stdout (answers). Owns the shapes and the line reading,
//! bounded: git-lfs is a local process, but a line is still never read without a limit.

use super::Error;
use crate::api::lfs::Operation;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::path::PathBuf;

/// Longest request line: an upload names a path and an action with a few headers.
pub const MAX_LINE: u64 = 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Request {
    Init {
        operation: Operation,
        #[serde(default)]
        remote: Option<String>,
    },
    Upload {
        oid: String,
        size: u64,
        path: PathBuf,
        action: Option<Action>,
    },
    Download {
        oid: String,
        size: u64,
        action: Option<Action>,
    },
    Terminate,
}

/// The batch answer's action, as git-lfs passes it on.
#[derive(Clone, Deserialize)]
pub struct Action {
    pub href: String,
    #[serde(default)]
    pub header: BTreeMap<String, String>,
}

// The href is presigned and the header may hold the caller's token.
impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Action { <redacted> }")
    }
}

#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub code: u32,
    pub message: String,
}

/// What the agent writes.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event<'a> {
    Progress {
        oid: &'a str,
        #[serde(rename = "bytesSoFar")]
        bytes_so_far: u64,
        #[serde(rename = "bytesSinceLast")]
        bytes_since_last: u64,
    },
    Complete {
        oid: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<ErrorBody>,
    },
}

/// The answer to `init`: `{}` or `{"error": ...}`.
#[derive(Debug, Serialize)]
pub struct InitAnswer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// The next request, `None` at the end of input. A line over [`MAX_LINE`] or one that is
/// not a request is an error naming what was wrong (the agent then stops: git-lfs and the
/// agent no longer agree on the protocol).
pub fn read_request(input: &mut impl BufRead) -> Result<Option<Request>, Error> {
    let mut line = Vec::new();
    let n = input
        .by_ref()
        .take(MAX_LINE + 1)
        .read_until(b'\n', &mut line)
        .map_err(Error::ReadInput)?;
    if n == 0 {
        return Ok(None);
    }
    if line.len() as u64 > MAX_LINE {
        return Err(Error::RequestTooLong { max: MAX_LINE });
    }
    let text = String::from_utf8_lossy(&line);
    if text.trim().is_empty() {
        return read_request(input);
    }
    serde_json::from_str(text.trim())
        .map(Some)
        .map_err(Error::BadRequest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_as_git_lfs_writes_them() {
        let input = concat!(
            r#"{"event":"init","operation":"upload","remote":"origin","concurrent":true,"concurrenttransfers":8}"#,
            "\n",
            r#"{"event":"upload","oid":"ab","size":3,"path":"/tmp/x","action":{"href":"http://h/p","header":{"A":"b"}}}"#,
            "\n\n",
            r#"{"event":"download","oid":"cd","size":4,"action":{"href":"http://h/q"}}"#,
            "\n",
            r#"{"event":"terminate"}"#,
            "\n"
        );
        let mut input = std::io::Cursor::new(input.as_bytes());
        assert!(matches!(
            read_request(&mut input).unwrap(),
            Some(Request::Init {
                operation: Operation::Upload,
                ..
            })
        ));
        match read_request(&mut input).unwrap() {
            Some(Request::Upload {
                size: 3, action, ..
            }) => assert_eq!(action.unwrap().header["A"], "b"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_request(&mut input).unwrap(),
            Some(Request::Download { size: 4, .. })
        ));
        assert!(matches!(
            read_request(&mut input).unwrap(),
            Some(Request::Terminate)
        ));
        assert!(read_request(&mut input).unwrap().is_none());
    }

    #[test]
    fn bad_lines_are_named() {
        let mut long = vec![b'x'; (MAX_LINE + 10) as usize];
        long.push(b'\n');
        let err = read_request(&mut std::io::Cursor::new(long)).unwrap_err();
        assert!(matches!(err, Error::RequestTooLong { .. }), "{err}");
        assert!(err.one_line().contains("over"), "{err}");
        let err = read_request(&mut std::io::Cursor::new(b"{\"event\":\"fly\"}\n")).unwrap_err();
        assert!(matches!(err, Error::BadRequest(_)), "{err}");
        assert!(err.one_line().contains("unreadable request"), "{err}");
    }

    #[test]
    fn events_are_written_as_git_lfs_reads_them() {
        let line = serde_json::to_string(&Event::Progress {
            oid: "ab",
            bytes_so_far: 10,
            bytes_since_last: 4,
        })
        .unwrap();
        assert_eq!(
            line,
            r#"{"event":"progress","oid":"ab","bytesSoFar":10,"bytesSinceLast":4}"#
        );
        let line = serde_json::to_string(&Event::Complete {
            oid: "ab",
            path: None,
            error: Some(ErrorBody {
                code: 2,
                message: "m".into(),
            }),
        })
        .unwrap();
        assert_eq!(
            line,
            r#"{"event":"complete","oid":"ab","error":{"code":2,"message":"m"}}"#
        );
        assert_eq!(
            serde_json::to_string(&InitAnswer { error: None }).unwrap(),
            "{}"
        );
    }
}
