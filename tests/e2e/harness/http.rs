//! Raw HTTP/1.1 exchanges on a `TcpStream`: what the tests send reaches the server byte for
//! byte (no client library normalizes a path, a header or a length on the way), and the
//! answer comes back whole, head included.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// An answer: its status (0 when the server closed the connection without one), its head
/// (status line and headers) and its body.
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    /// The first header `name` (any case), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, value) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// One exchange with `server` (`http://127.0.0.1:PORT`): `head` (request line and headers,
/// each header line but the last ending in CRLF, without the blank line) and `body`, sent as
/// is; `declared` overrides the `content-length` (`None`: the body's length; `Some(None)`: no
/// length header at all; a length past the body ends the stream after it).
pub fn exchange(server: &str, head: &str, body: &[u8], declared: Option<Option<usize>>) -> Reply {
    let addr = server.trim_start_matches("http://");
    let mut conn = TcpStream::connect(addr).expect("connect to server");
    // Hypha's RPCs (artifact creation) can take tens of seconds on a loaded machine.
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("set timeout");
    let mut req = format!("{head}\r\nhost: {addr}\r\nconnection: close\r\n");
    if let Some(len) = declared.unwrap_or(Some(body.len())) {
        req.push_str(&format!("content-length: {len}\r\n"));
    }
    req.push_str("\r\n");
    let _ = conn.write_all(req.as_bytes());
    let _ = conn.write_all(body);
    let _ = conn.flush();
    if let Some(Some(len)) = declared {
        if len > body.len() {
            // A body shorter than declared: the server only learns it when the stream ends.
            // (hyper does not serve half-closed connections, so no answer may come back.)
            let _ = conn.shutdown(Shutdown::Write);
        }
    }
    let mut response = Vec::new();
    let _ = conn.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}
