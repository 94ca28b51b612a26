//! Why the LFS agent failed: for one object (reported to git-lfs in that object's `complete`
//! event) or for the session (the protocol itself broke, and the agent stops).
//!
//! Each variant names what failed (the file, the request, the plan); the cause is its
//! `#[source]`. git-lfs shows one line per failed object, so [`Error::one_line`] joins the
//! chain as `what: cause: cause`, the words the agent wrote before it had a type. Never holds
//! an href or a header: they are credentials (reqwest errors are kept without their URL).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read from git-lfs")]
    ReadInput(#[source] std::io::Error),
    #[error("a request from git-lfs is over {max} bytes")]
    RequestTooLong { max: u64 },
    #[error("unreadable request from git-lfs")]
    BadRequest(#[source] serde_json::Error),
    #[error("cannot write to git-lfs")]
    Output(#[source] std::io::Error),
    #[error("cannot encode an event for git-lfs")]
    Encode(#[source] serde_json::Error),
    #[error("cannot start the transfer runtime")]
    Runtime(#[source] std::io::Error),
    /// git-lfs asked for a transfer before `init`.
    #[error("{0} before init")]
    BeforeInit(&'static str),
    #[error("cannot run git rev-parse")]
    RevParse(#[source] std::io::Error),
    #[error("git rev-parse --git-common-dir failed: {stderr}")]
    RevParseFailed { stderr: String },
    /// The batch answer named no href for the object.
    #[error("the batch answer gave no {0} action")]
    NoAction(&'static str),
    #[error("invalid lfs object id {0:?}")]
    InvalidOid(String),
    #[error("{} has {on_disk} bytes, the pointer says {size}", path.display())]
    SizeMismatch {
        path: PathBuf,
        on_disk: u64,
        size: u64,
    },
    #[error("{} changed while it was read", path.display())]
    Changed { path: PathBuf },
    /// A local file: `doing` is the verb ("read", "create", "sync", ...).
    #[error("cannot {doing} {}", path.display())]
    File {
        doing: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Git's HTTP settings for the origin of an href could not be read.
    #[error("{0}")]
    HttpSettings(String),
    /// A request that got no answer.
    #[error("{what} failed")]
    Send {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    /// A request the server or the store refused: its own message, else the HTTP status.
    #[error("{what}: {message}")]
    Refused { what: String, message: String },
    #[error("{what}: answer cut")]
    Cut {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what}: the server's answer is over {max} bytes")]
    AnswerTooLarge { what: String, max: usize },
    #[error("unreadable {what}")]
    Unreadable {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A plan (`parts`, `delta`) that does not describe the object it was asked for.
    #[error("the server's {plan} plan is unusable: {why}")]
    BadPlan {
        plan: &'static str,
        why: &'static str,
    },
    #[error("{what}: the store sent {got} bytes instead of {expected}")]
    Length {
        what: String,
        got: u64,
        expected: u64,
    },
    #[error("{what}: cannot write")]
    WriteBody {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A `PUT` through a presigned URL (the whole object).
    #[error(transparent)]
    Put(#[from] crate::client::Error),
    /// A part (`part N`) or range (`range at N`) of the object.
    #[error("{what}")]
    Piece {
        what: String,
        #[source]
        source: crate::client::Error,
    },
    #[error("cannot record range {index}")]
    Record {
        index: u64,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "lfs object upload did not finish after {rounds} rounds (run the push again: the \
         parts stored so far are kept)"
    )]
    Rounds {
        rounds: usize,
        #[source]
        last: Option<Box<Error>>,
    },
    #[error("{failed} of {count} ranges failed (run it again: the {kept} ranges read are kept)")]
    Ranges {
        failed: usize,
        count: u64,
        kept: u64,
        #[source]
        first: Box<Error>,
    },
    /// A blocking step (`choosing delta bases`, `chunking`) that did not finish.
    #[error("{what}")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}

impl Error {
    /// The error and its causes on one line, as git-lfs shows a failed object.
    pub fn one_line(&self) -> String {
        let mut line = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            line.push_str(": ");
            line.push_str(&cause.to_string());
            source = cause.source();
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_says_what_failed_then_why() {
        let part = Error::Piece {
            what: "part 3".into(),
            source: crate::client::Error::ServerFailed {
                what: "lfs object part".into(),
            },
        };
        let rounds = Error::Rounds {
            rounds: 4,
            last: Some(Box::new(part)),
        };
        let line = rounds.one_line();
        assert!(
            line.starts_with("lfs object upload did not finish after 4 rounds"),
            "{line}"
        );
        assert!(line.contains(": part 3: "), "{line}");
        assert!(!line.contains('\n'), "{line}");
        let file = Error::File {
            doing: "read",
            path: "/x/y".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert!(
            file.one_line().starts_with("cannot read /x/y: "),
            "{file:?}"
        );
    }
}
