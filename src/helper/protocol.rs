//! The remote-helper line grammar (gitremote-helpers(7), docs/protocol.md §2-4): typed commands in,
//! typed replies out.
//!
//! Pure: no network, no repository, no progress. Reading batches (`fetch` and `push` lines up to
//! a blank line) is the session's job; this module parses one line and formats one reply.

use std::io::{self, Write};

/// One line git sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Capabilities,
    /// `list` or `list for-push`.
    List {
        for_push: bool,
    },
    /// `option <name> <value>`, or `option <name>` alone (git before 2.45 sends
    /// `option object-format` so); `value` is still C-quoted where git quoted it.
    Option {
        name: String,
        value: Option<String>,
    },
    Fetch(FetchSpec),
    Push(PushSpec),
    /// The blank line that ends a batch or the session.
    Blank,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchSpec {
    pub oid: String,
    pub name: String,
}

/// `push [+]<src>:<dst>`; an empty `src` deletes `dst`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSpec {
    pub force: bool,
    pub src: String,
    pub dst: String,
}

impl PushSpec {
    pub fn is_delete(&self) -> bool {
        self.src.is_empty()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("unknown command {0:?} from git")]
    UnknownCommand(String),
    #[error("malformed {command} line from git: {line:?}")]
    Malformed { command: &'static str, line: String },
}

/// Parse one line (without its trailing newline).
pub fn parse(line: &str) -> Result<Command, Error> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() {
        return Ok(Command::Blank);
    }
    let (word, rest) = match line.split_once(' ') {
        Some((w, r)) => (w, Some(r)),
        None => (line, None),
    };
    match (word, rest) {
        ("capabilities", None) => Ok(Command::Capabilities),
        ("list", None) => Ok(Command::List { for_push: false }),
        ("list", Some("for-push")) => Ok(Command::List { for_push: true }),
        ("option", Some(rest)) => {
            let (name, value) = match rest.split_once(' ') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (rest, None),
            };
            if name.is_empty() {
                return Err(malformed("option", line));
            }
            Ok(Command::Option {
                name: name.to_owned(),
                value,
            })
        }
        ("fetch", Some(rest)) => match rest.split_once(' ') {
            Some((oid, name)) if is_hex_oid(oid) && !name.is_empty() => {
                Ok(Command::Fetch(FetchSpec {
                    oid: oid.to_owned(),
                    name: name.to_owned(),
                }))
            }
            _ => Err(malformed("fetch", line)),
        },
        ("push", Some(rest)) => {
            let (force, refspec) = match rest.strip_prefix('+') {
                Some(r) => (true, r),
                None => (false, rest),
            };
            // The destination is a full ref name and never contains ':'; the source may be
            // any revision expression, so split at the last colon.
            match refspec.rsplit_once(':') {
                Some((src, dst)) if !dst.is_empty() => Ok(Command::Push(PushSpec {
                    force,
                    src: src.to_owned(),
                    dst: dst.to_owned(),
                })),
                _ => Err(malformed("push", line)),
            }
        }
        _ => Err(Error::UnknownCommand(truncate(line))),
    }
}

fn malformed(command: &'static str, line: &str) -> Error {
    Error::Malformed {
        command,
        line: truncate(line),
    }
}

/// Hostile input may be huge; error messages carry at most a prefix of it.
fn truncate(line: &str) -> String {
    line.chars().take(120).collect()
}

fn is_hex_oid(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Undo git's `quote_c_style` (quote.c): a value wrapped in double quotes with backslash
/// escapes (`\n`, `\t`, `\"`, `\\`, octal `\ooo`). Unquoted values come back unchanged.
pub fn unquote_c_style(value: &str) -> Result<String, Error> {
    let Some(inner) = value.strip_prefix('"') else {
        return Ok(value.to_owned());
    };
    let bad = || malformed("quoted option", value);
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    let mut bytes = inner.bytes();
    loop {
        match bytes.next().ok_or_else(bad)? {
            b'"' => break,
            b'\\' => {
                let c = bytes.next().ok_or_else(bad)?;
                out.push(match c {
                    b'a' => 0x07,
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'v' => 0x0b,
                    b'\\' | b'"' => c,
                    b'0'..=b'3' => {
                        let d1 = bytes.next().filter(|d| (b'0'..=b'7').contains(d));
                        let d2 = bytes.next().filter(|d| (b'0'..=b'7').contains(d));
                        match (d1, d2) {
                            (Some(d1), Some(d2)) => {
                                ((c - b'0') << 6) | ((d1 - b'0') << 3) | (d2 - b'0')
                            }
                            _ => return Err(bad()),
                        }
                    }
                    _ => return Err(bad()),
                });
            }
            b => out.push(b),
        }
    }
    if bytes.next().is_some() {
        return Err(bad());
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// Quote a status message the way git's `unquote_c_style` reads it back, when it needs it.
pub fn quote_c_style(value: &str) -> String {
    if !value
        .chars()
        .any(|c| c == '"' || c == '\\' || c.is_control())
    {
        return value.to_owned();
    }
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            // Each byte of its UTF-8 form, as git's quote_c_style escapes bytes: a C1
            // control (U+0080..U+009F) is two bytes, and one escape would not read back.
            c if c.is_control() => {
                for byte in c.encode_utf8(&mut [0; 4]).bytes() {
                    out.push_str(&format!("\\{byte:03o}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Answer to one `option` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionReply {
    Ok,
    Unsupported,
    Error(String),
}

/// Per-ref answer to a `push` batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushStatus {
    Ok,
    /// `error <dst> <why>`; `why` is one of git's status words or free text.
    Error(String),
}

/// Writes replies to git; flushes after each complete reply so git never waits on a buffer.
pub struct Replies<W: Write> {
    out: W,
}

impl<W: Write> Replies<W> {
    pub fn new(out: W) -> Self {
        Replies { out }
    }

    pub fn capabilities(&mut self) -> io::Result<()> {
        self.out
            .write_all(b"fetch\npush\noption\ncheck-connectivity\nobject-format\n\n")?;
        self.out.flush()
    }

    pub fn option(&mut self, reply: &OptionReply) -> io::Result<()> {
        match reply {
            OptionReply::Ok => writeln!(self.out, "ok")?,
            OptionReply::Unsupported => writeln!(self.out, "unsupported")?,
            OptionReply::Error(msg) => writeln!(self.out, "error {}", one_line(msg))?,
        }
        self.out.flush()
    }

    /// `list` reply: optional `:object-format`, `<oid> <ref>` lines, the HEAD symref, blank.
    pub fn list<'a>(
        &mut self,
        object_format: Option<&str>,
        refs: impl IntoIterator<Item = (&'a str, &'a str)>,
        head_symref: Option<&str>,
    ) -> io::Result<()> {
        if let Some(format) = object_format {
            writeln!(self.out, ":object-format {format}")?;
        }
        // HEAD first, as git's own advertisement orders it (ls-remote prints in this order).
        if let Some(target) = head_symref {
            writeln!(self.out, "@{target} HEAD")?;
        }
        for (name, oid) in refs {
            writeln!(self.out, "{oid} {name}")?;
        }
        writeln!(self.out)?;
        self.out.flush()
    }

    /// `stateless-connect` reply: `fallback`, so git goes on with `list` and `fetch` (protocol
    /// v0 through the helper) instead of handing it a connection.
    pub fn fallback(&mut self) -> io::Result<()> {
        writeln!(self.out, "fallback")?;
        self.out.flush()
    }

    /// `fetch` batch reply: an optional `lock` line, then the blank line.
    pub fn fetch_done(&mut self, lock: Option<&str>) -> io::Result<()> {
        if let Some(path) = lock {
            writeln!(self.out, "lock {path}")?;
        }
        writeln!(self.out)?;
        self.out.flush()
    }

    pub fn push_done<'a>(
        &mut self,
        statuses: impl IntoIterator<Item = (&'a str, &'a PushStatus)>,
    ) -> io::Result<()> {
        for (dst, status) in statuses {
            match status {
                PushStatus::Ok => writeln!(self.out, "ok {dst}")?,
                PushStatus::Error(why) => writeln!(self.out, "error {dst} {}", quote_c_style(why))?,
            }
        }
        writeln!(self.out)?;
        self.out.flush()
    }
}

fn one_line(msg: &str) -> String {
    msg.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OID: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn parses_every_command() {
        assert_eq!(parse("capabilities"), Ok(Command::Capabilities));
        assert_eq!(parse("list"), Ok(Command::List { for_push: false }));
        assert_eq!(parse("list for-push"), Ok(Command::List { for_push: true }));
        assert_eq!(parse(""), Ok(Command::Blank));
        assert_eq!(
            parse("option push-option \"a b\""),
            Ok(Command::Option {
                name: "push-option".into(),
                value: Some("\"a b\"".into())
            })
        );
        // git 2.28-2.44 ask for the hash algorithm without a value.
        assert_eq!(
            parse("option object-format"),
            Ok(Command::Option {
                name: "object-format".into(),
                value: None
            })
        );
        assert_eq!(
            parse(&format!("fetch {OID} refs/heads/main")),
            Ok(Command::Fetch(FetchSpec {
                oid: OID.into(),
                name: "refs/heads/main".into()
            }))
        );
        assert_eq!(
            parse("push +HEAD~1:refs/heads/y"),
            Ok(Command::Push(PushSpec {
                force: true,
                src: "HEAD~1".into(),
                dst: "refs/heads/y".into()
            }))
        );
        let delete = parse("push :refs/heads/gone").expect("valid");
        assert!(matches!(delete, Command::Push(ref p) if p.is_delete() && !p.force));
    }

    #[test]
    fn refuses_malformed_lines() {
        for bad in [
            "fetch",
            "fetch nothex refs/heads/x",
            "fetch 0123 refs/heads/x",
            "push main",
            "push main:",
            "option",
            "option ",
            "option  x",
            "list everything",
            "connect git-upload-pack",
            "\u{0}\u{1}",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let long = "x".repeat(100_000);
        match parse(&long) {
            Err(Error::UnknownCommand(s)) => assert!(s.len() <= 480),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn c_unquoting_matches_git() {
        assert_eq!(unquote_c_style("ci.skip").as_deref(), Ok("ci.skip"));
        assert_eq!(unquote_c_style("\"a b\"").as_deref(), Ok("a b"));
        assert_eq!(
            unquote_c_style(r#""tab\there \"q\" \\ \303\274""#).as_deref(),
            Ok("tab\there \"q\" \\ ü")
        );
        assert!(unquote_c_style("\"unterminated").is_err());
        assert!(unquote_c_style("\"bad \\q\"").is_err());
        assert!(unquote_c_style("\"x\" trailing").is_err());
    }

    #[test]
    fn quoting_round_trips() {
        for s in [
            "plain words",
            "with \"quotes\"",
            "line\nbreak",
            "back\\slash",
            // A C1 control is two bytes of UTF-8 (found by the protocol fuzz target).
            "c1 \u{96} control",
        ] {
            assert_eq!(unquote_c_style(&quote_c_style(s)).as_deref(), Ok(s));
        }
    }

    #[test]
    fn replies_are_byte_exact() {
        let mut buf = Vec::new();
        let mut r = Replies::new(&mut buf);
        r.capabilities().expect("write");
        r.option(&OptionReply::Unsupported).expect("write");
        r.list(
            Some("sha1"),
            [("refs/heads/main", OID)],
            Some("refs/heads/main"),
        )
        .expect("write");
        r.push_done([
            ("refs/heads/a", &PushStatus::Ok),
            (
                "refs/heads/b",
                &PushStatus::Error("non-fast forward".into()),
            ),
        ])
        .expect("write");
        r.fetch_done(None).expect("write");
        assert_eq!(
            String::from_utf8(buf).expect("utf8"),
            format!(
                "fetch\npush\noption\ncheck-connectivity\nobject-format\n\nunsupported\n\
                 :object-format sha1\n@refs/heads/main HEAD\n{OID} refs/heads/main\n\n\
                 ok refs/heads/a\nerror refs/heads/b non-fast forward\n\n\n"
            )
        );
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // Any line git (or an attacker) could send either parses or gives an error: no panic.
        #[test]
        fn parse_never_panics(line in ".{0,300}") {
            let _ = parse(&line);
        }

        #[test]
        fn unquote_never_panics(value in "\"?[\\\\\"a-z0-9 ]{0,40}\"?") {
            let _ = unquote_c_style(&value);
        }

        #[test]
        fn push_lines_round_trip(force: bool, src in "[A-Za-z0-9~^/_.-]{0,30}", dst in "refs/heads/[a-z0-9/_.-]{1,30}") {
            let line = format!("push {}{}:{}", if force { "+" } else { "" }, src, dst);
            let parsed = parse(&line).expect("well-formed push line");
            prop_assert_eq!(parsed, Command::Push(PushSpec { force, src, dst }));
        }
    }
}
