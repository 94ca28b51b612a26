//! `protocol`: the remote-helper line grammar (`helper::protocol::parse`, `unquote_c_style`,
//! `quote_c_style`) on lines from git, and the session's option table (`option <name>
//! <value>` through `helper::Session::run`, which answers without the network).
//!
//! Checks: never a panic; parsed commands keep their grammar (40/64-hex fetch ids, a non-empty
//! push destination without ':', a non-empty option name without ' '); unquoting leaves an
//! unquoted value alone; `quote_c_style` output reads back with `unquote_c_style`; the session
//! answers every option line with exactly one `ok`, `unsupported` or `error ...` line.

use hypha_git::helper::protocol::{parse, quote_c_style, unquote_c_style, Command};
use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut session_lines = Vec::new();
    for line in text.split('\n') {
        check_line(line);
        // `BufRead::lines` drops a CR before the newline: give the session lines without one.
        let line = line.trim_end_matches('\r');
        if let Ok(Command::Option { .. } | Command::Capabilities) = parse(line) {
            session_lines.push(line);
        }
    }
    check_roundtrip(&text);
    if !session_lines.is_empty() {
        session(&session_lines);
    }
}

fn check_line(line: &str) {
    match parse(line) {
        Ok(Command::Fetch(spec)) => {
            assert!(spec.oid.len() == 40 || spec.oid.len() == 64, "{spec:?}");
            assert!(spec.oid.bytes().all(|b| b.is_ascii_hexdigit()), "{spec:?}");
            assert!(!spec.name.is_empty());
        }
        Ok(Command::Push(spec)) => {
            assert!(!spec.dst.is_empty() && !spec.dst.contains(':'), "{spec:?}");
            assert_eq!(spec.is_delete(), spec.src.is_empty());
        }
        Ok(Command::Option { name, value }) => {
            assert!(!name.is_empty() && !name.contains(' '), "{name:?}");
            if let Some(value) = value {
                let _ = unquote_c_style(&value);
            }
        }
        Ok(Command::Blank) => assert!(line.is_empty() || line == "\r"),
        Ok(_) | Err(_) => {}
    }
    match unquote_c_style(line) {
        Ok(v) if !line.starts_with('"') => assert_eq!(v, line),
        _ => {}
    }
}

fn check_roundtrip(text: &str) {
    let quoted = quote_c_style(text);
    assert!(
        !quoted.contains('\n'),
        "quoted text spans lines: {quoted:?}"
    );
    assert_eq!(
        unquote_c_style(&quoted).as_deref(),
        Ok(text),
        "quote_c_style output does not read back: {quoted:?}"
    );
}

/// A writer the test can read after the session owns it.
#[derive(Clone, Default)]
struct Shared(Rc<RefCell<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Option and capabilities lines through a session that has no server (none is called).
fn session(lines: &[&str]) {
    let remote = hypha_git::config::Remote {
        server: url::Url::parse("http://127.0.0.1:9/").expect("url"),
        workspace: "ws".into(),
        alias: "repo".into(),
    };
    let client = hypha_git::client::Client::new(remote, None).expect("client");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let out = Shared::default();
    let mut session = hypha_git::helper::Session::new(
        out.clone(),
        client,
        None,
        runtime,
        hypha_git::helper::Ui::quiet(),
    );
    let mut input = lines.join("\n");
    input.push('\n');
    session
        .run(input.as_bytes())
        .expect("options and capabilities never fail a session");
    let replies = String::from_utf8(out.0.borrow().clone()).expect("replies are UTF-8");
    let options = lines
        .iter()
        .take_while(|l| !matches!(parse(l), Ok(Command::Blank)))
        .filter(|l| matches!(parse(l), Ok(Command::Option { .. })))
        .count();
    let answered = replies
        .lines()
        .filter(|l| *l == "ok" || *l == "unsupported" || l.starts_with("error "))
        .count();
    assert_eq!(answered, options, "one reply per option line: {replies:?}");
}
