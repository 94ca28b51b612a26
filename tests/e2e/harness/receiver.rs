//! A real HTTP receiver for webhook tests: listens on `127.0.0.1:0`, records every request
//! (headers and body) and answers each as its script says, one connection per thread.
//!
//! Plain `std::net` and HTTP/1.1 with `Content-Length` (what reqwest sends); it answers
//! `Connection: close`, so every delivery attempt is its own connection. Not a general server.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How the receiver answers one request.
pub enum Reply {
    Status(u16),
    /// Answer 200 only once the test sends on (or drops) the paired sender.
    HoldUntil(mpsc::Receiver<()>),
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct Receiver {
    pub port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    /// Answers requests in the order of `script`, then 200 to anything after it.
    pub fn start(script: Vec<Reply>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the webhook receiver");
        let port = listener.local_addr().expect("local address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let recorded = requests.clone();
        // Detached: it dies with the test process, and nothing connects after the test ends.
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (recorded, script) = (recorded.clone(), script.clone());
                thread::spawn(move || serve(stream, &recorded, &script));
            }
        });
        Receiver { port, requests }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("requests").clone()
    }

    /// Waits up to `timeout` for at least `n` requests, and returns them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Request> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.requests();
            if seen.len() >= n || Instant::now() > deadline {
                return seen;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

fn serve(stream: TcpStream, recorded: &Mutex<Vec<Request>>, script: &Mutex<VecDeque<Reply>>) {
    let Some(request) = read_request(&stream) else {
        return;
    };
    recorded.lock().expect("requests").push(request);
    let reply = script.lock().expect("script").pop_front();
    let status = match reply {
        None => 200,
        Some(Reply::Status(status)) => status,
        Some(Reply::HoldUntil(go)) => {
            let _ = go.recv_timeout(Duration::from_secs(60));
            200
        }
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}
