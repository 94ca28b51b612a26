//! A fault-injecting HTTP/1.1 proxy between the helper and `git hypha serve` (docs/scenarios.md H).
//!
//! Plain threads and a `TcpListener`, one request per connection: the proxy reads a request,
//! decides from its rules whether to disturb it, forwards it to the real server with
//! `connection: close`, and relays the answer (also with `connection: close`, so the client
//! opens a fresh connection, and so a fresh decision, for every request). Start the server
//! with `--public-url` pointing here and presigned URLs come through the proxy too, so pack
//! uploads and downloads can be disturbed as well as API calls.
//!
//! A rule matches a method and a substring of the path (the query string, which carries
//! presigned signatures, is never looked at or recorded) and fires for the first N matching
//! requests or for all of them. Faults: an HTTP status (500, 503 with `Retry-After`, 429), a
//! connection reset before anything is forwarded, a stall past the client's read timeout, a
//! truncated response body, a response lost after the server acted on the request, and
//! gates that hold a request (before forwarding, halfway through its body, or after the
//! server answered) while the test kills the helper at exactly that moment, then drop it.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Requests larger than this are not expected from the helper (test packs are small).
const MAX_BODY: usize = 64 << 20;
const MAX_HEAD: usize = 64 << 10;

/// What to do to a matching request.
#[derive(Clone)]
pub enum Fault {
    /// Answer with this status (and `Retry-After: secs` when given) without forwarding.
    Status { code: u16, retry_after: Option<u32> },
    /// Close the connection with a TCP reset as soon as the request starts arriving.
    Reset,
    /// Read the request, then say nothing for this long, then close.
    Stall(Duration),
    /// Read the request, wait this long, then forward it as usual (a slow link: a presigned
    /// URL may expire on the way).
    Delay(Duration),
    /// Forward, then relay the response head and only half of its body, then close.
    Truncate,
    /// Forward (so the server acts on it), then close without any answer.
    LoseResponse,
    /// Hold the request at the gate's point until the test abandons it (then the connection
    /// closes and nothing more of it reaches the server).
    Hold(Gate),
}

/// Where a [`Gate`] holds its request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HoldAt {
    /// Nothing forwarded yet.
    BeforeForward,
    /// Half of the request body read (nothing forwarded yet).
    MidBody,
    /// The server has answered; the answer is not relayed yet.
    AfterResponse,
}

/// A point where one request waits for the test.
#[derive(Clone)]
pub struct Gate {
    at: HoldAt,
    state: Arc<(Mutex<GateState>, Condvar)>,
}

#[derive(Default)]
struct GateState {
    arrived: usize,
    abandoned: bool,
}

impl Gate {
    pub fn new(at: HoldAt) -> Gate {
        Gate {
            at,
            state: Arc::new((Mutex::new(GateState::default()), Condvar::new())),
        }
    }

    /// Waits until a request reached the gate; false on timeout.
    pub fn wait_arrival(&self, timeout: Duration) -> bool {
        let (lock, cond) = &*self.state;
        let guard = lock.lock().expect("gate lock");
        let (guard, _) = cond
            .wait_timeout_while(guard, timeout, |s| s.arrived == 0)
            .expect("gate lock");
        guard.arrived > 0
    }

    /// Drops held and future requests: their connections close, nothing reaches the server
    /// (what happens to a request whose sender died before it was complete).
    pub fn abandon(&self) {
        let (lock, cond) = &*self.state;
        lock.lock().expect("gate lock").abandoned = true;
        cond.notify_all();
    }

    /// Waits until the test abandons the request (false) or, should it forget, two minutes
    /// have passed (true: go on, so the suite does not hang).
    fn hold(&self) -> bool {
        let (lock, cond) = &*self.state;
        let mut guard = lock.lock().expect("gate lock");
        guard.arrived += 1;
        cond.notify_all();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !guard.abandoned && Instant::now() < deadline {
            guard = cond
                .wait_timeout(guard, Duration::from_millis(200))
                .expect("gate lock")
                .0;
        }
        !guard.abandoned
    }
}

struct Rule {
    method: String,
    path: String,
    /// `None`: every matching request.
    remaining: Option<usize>,
    fault: Fault,
}

#[derive(Default)]
struct Shared {
    upstream: Mutex<Option<String>>,
    rules: Mutex<Vec<Rule>>,
    /// `METHOD path` of every request seen, without query strings.
    seen: Mutex<Vec<String>>,
    /// `METHOD path` and the `Range` header of every request that had one.
    ranges: Mutex<Vec<(String, String)>>,
    injected: AtomicUsize,
    stop: AtomicBool,
}

pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Binds `127.0.0.1:0`. Requests are answered 502 until [`Proxy::set_upstream`].
    pub fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared::default());
        let accept = shared.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if accept.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let shared = accept.clone();
                thread::spawn(move || {
                    let _ = handle(conn, &shared);
                });
            }
        });
        Proxy { port, shared }
    }

    /// `http://127.0.0.1:PORT`: give it to the server as `--public-url`, and to git in place
    /// of the server's own URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `--public-url <proxy>`, for [`crate::harness::TestEnv::with_serve_args`].
    pub fn serve_args(&self) -> Vec<String> {
        vec!["--public-url".to_owned(), self.url()]
    }

    /// Where requests go (the real server's `http://127.0.0.1:PORT`).
    pub fn set_upstream(&self, url: &str) {
        *self.shared.upstream.lock().expect("upstream lock") = Some(url.to_owned());
    }

    /// Disturbs the next `times` requests (all, if `None`) with `method` (or any, if empty)
    /// whose path contains `path`. Rules are tried in the order they were added.
    pub fn inject(&self, method: &str, path: &str, times: Option<usize>, fault: Fault) {
        self.shared.rules.lock().expect("rules lock").push(Rule {
            method: method.to_owned(),
            path: path.to_owned(),
            remaining: times,
            fault,
        });
    }

    /// Removes every rule: from now on the proxy only relays.
    pub fn clear(&self) {
        self.shared.rules.lock().expect("rules lock").clear();
    }

    /// How many requests were disturbed so far.
    pub fn injected(&self) -> usize {
        self.shared.injected.load(Ordering::SeqCst)
    }

    /// `METHOD path` of every request so far (no query strings).
    pub fn seen(&self) -> Vec<String> {
        self.shared.seen.lock().expect("seen lock").clone()
    }

    /// The `Range` headers of the requests so far with `method` and a path containing `path`
    /// (those without one left out), in order.
    pub fn ranges(&self, method: &str, path: &str) -> Vec<String> {
        self.shared
            .ranges
            .lock()
            .expect("ranges lock")
            .iter()
            .filter(|(s, _)| s.starts_with(&format!("{method} ")) && s.contains(path))
            .map(|(_, range)| range.clone())
            .collect()
    }

    /// How many requests so far had `method` and a path containing `path`.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.starts_with(&format!("{method} ")) && s.contains(path))
            .count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so its thread ends.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

struct Request {
    method: String,
    /// The request target as sent (with its query), for forwarding only.
    target: String,
    /// The target without its query: what rules match and what is recorded.
    path: String,
    /// Head lines after the request line, `connection` and `keep-alive` removed.
    headers: Vec<String>,
    body: Vec<u8>,
}

fn handle(mut client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    // Peek at the head without consuming it: a reset is decided before reading anything,
    // because closing a socket with unread data in its receive buffer makes the kernel
    // answer with RST instead of FIN.
    let head_len = peek_head(&client)?;
    let mut head = vec![0u8; head_len];
    client.peek(&mut head)?;
    let Some(mut req) = parse_head(&String::from_utf8_lossy(&head)) else {
        return respond(&mut client, 400, None);
    };
    shared
        .seen
        .lock()
        .expect("seen lock")
        .push(format!("{} {}", req.method, req.path));
    if let Some(range) = req.headers.iter().find_map(|h| {
        let (name, value) = h.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("range")
            .then(|| value.trim().to_owned())
    }) {
        shared
            .ranges
            .lock()
            .expect("ranges lock")
            .push((format!("{} {}", req.method, req.path), range));
    }
    let fault = take_fault(shared, &req);
    if fault.is_some() {
        shared.injected.fetch_add(1, Ordering::SeqCst);
    }
    if let Some(Fault::Reset) = fault {
        drop(client);
        return Ok(());
    }
    client.read_exact(&mut head)?;
    let length = content_length(&req.headers);
    if length > MAX_BODY {
        return respond(&mut client, 413, None);
    }
    let mut body = Vec::new();
    if let Some(Fault::Hold(gate)) = &fault {
        if gate.at == HoldAt::MidBody {
            read_body(&mut client, &mut body, length / 2)?;
            if !gate.hold() {
                return Ok(());
            }
        }
    }
    read_body(&mut client, &mut body, length)?;
    req.body = body;
    match &fault {
        Some(Fault::Status { code, retry_after }) => {
            return respond(&mut client, *code, *retry_after)
        }
        Some(Fault::Stall(how_long)) => {
            thread::sleep(*how_long);
            return Ok(());
        }
        Some(Fault::Delay(how_long)) => thread::sleep(*how_long),
        _ => {}
    }
    if let Some(Fault::Hold(gate)) = &fault {
        if gate.at == HoldAt::BeforeForward && !gate.hold() {
            return Ok(());
        }
    }
    let upstream = shared.upstream.lock().expect("upstream lock").clone();
    let Some(upstream) = upstream else {
        return respond(&mut client, 502, None);
    };
    let response = match forward(&upstream, &req) {
        Ok(r) => r,
        Err(_) => return respond(&mut client, 502, None),
    };
    match &fault {
        Some(Fault::LoseResponse) => {
            let _ = client.shutdown(Shutdown::Both);
            Ok(())
        }
        Some(Fault::Truncate) => {
            let split = find_head_end(&response).unwrap_or(response.len());
            let body_len = response.len() - split;
            client.write_all(&response[..split + body_len / 2])?;
            client.flush()?;
            let _ = client.shutdown(Shutdown::Both);
            Ok(())
        }
        Some(Fault::Hold(gate)) if gate.at == HoldAt::AfterResponse => {
            if gate.hold() {
                client.write_all(&response)?;
            }
            client.flush()
        }
        _ => {
            client.write_all(&response)?;
            client.flush()
        }
    }
}

/// Waits until the whole request head is in the socket's receive buffer; returns its length.
fn peek_head(conn: &TcpStream) -> std::io::Result<usize> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut last = 0;
    loop {
        let n = conn.peek(&mut buf)?;
        if let Some(end) = find_head_end(&buf[..n]) {
            return Ok(end);
        }
        if n == 0 || n == buf.len() {
            return Err(std::io::Error::other("no complete request head"));
        }
        if n == last {
            // peek returns at once while anything is buffered: wait for more to arrive.
            thread::sleep(Duration::from_millis(2));
        }
        last = n;
    }
}

fn take_fault(shared: &Shared, req: &Request) -> Option<Fault> {
    let mut rules = shared.rules.lock().expect("rules lock");
    for rule in rules.iter_mut() {
        let method_ok = rule.method.is_empty() || rule.method.eq_ignore_ascii_case(&req.method);
        if !method_ok || !req.path.contains(&rule.path) {
            continue;
        }
        match &mut rule.remaining {
            Some(0) => continue,
            Some(n) => *n -= 1,
            None => {}
        }
        return Some(rule.fault.clone());
    }
    None
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn parse_head(head: &str) -> Option<Request> {
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let target = first.next()?.to_owned();
    let path = target.split('?').next().unwrap_or(&target).to_owned();
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter(|l| {
            let name = l
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            name != "connection" && name != "keep-alive"
        })
        .map(str::to_owned)
        .collect();
    Some(Request {
        method,
        target,
        path,
        headers,
        body: Vec::new(),
    })
}

fn content_length(headers: &[String]) -> usize {
    headers
        .iter()
        .filter_map(|h| h.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

fn read_body(conn: &mut TcpStream, body: &mut Vec<u8>, len: usize) -> std::io::Result<()> {
    let mut chunk = [0u8; 64 * 1024];
    while body.len() < len {
        let want = (len - body.len()).min(chunk.len());
        let n = conn.read(&mut chunk[..want])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}

/// Sends `req` to the real server and returns its whole response (head and body), with
/// `connection: close` in the head.
fn forward(upstream: &str, req: &Request) -> std::io::Result<Vec<u8>> {
    let authority = upstream.trim_start_matches("http://");
    let mut server = TcpStream::connect(authority)?;
    server.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.target);
    for h in &req.headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("connection: close\r\n\r\n");
    server.write_all(head.as_bytes())?;
    server.write_all(&req.body)?;
    server.flush()?;
    let mut response = Vec::new();
    server.read_to_end(&mut response)?;
    Ok(with_connection_close(response))
}

fn with_connection_close(response: Vec<u8>) -> Vec<u8> {
    let Some(end) = find_head_end(&response) else {
        return response;
    };
    let head = String::from_utf8_lossy(&response[..end - 4]).into_owned();
    let mut lines: VecDeque<&str> = head.split("\r\n").collect();
    let status = lines.pop_front().unwrap_or("HTTP/1.1 502 Bad Gateway");
    let mut out = format!("{status}\r\n");
    for line in lines {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if name != "connection" && name != "keep-alive" {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&response[end..]);
    bytes
}

fn respond(conn: &mut TcpStream, code: u16, retry_after: Option<u32>) -> std::io::Result<()> {
    let reason = match code {
        400 => "Bad Request",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Injected",
    };
    let body = format!("injected {code}\n");
    let mut head = format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(secs) = retry_after {
        head.push_str(&format!("retry-after: {secs}\r\n"));
    }
    head.push_str("connection: close\r\n\r\n");
    conn.write_all(head.as_bytes())?;
    conn.write_all(body.as_bytes())?;
    conn.flush()
}
