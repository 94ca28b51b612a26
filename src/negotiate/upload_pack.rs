//! git's protocol v0 upload-pack as one stateless request, and its answer read back
//! (gitprotocol-pack(5), gitprotocol-http(5)): what a fetch sends a stock Hypha (docs/hypha.md
//! §5, issue 23).
//!
//! The request holds everything at once: the wants, the shallow boundaries, `deepen`, the
//! haves ([`super::haves`]) and `done`, so the server answers with its pack straight away.
//! It asks for `side-band-64k ofs-delta` and names its agent, plus `no-progress` when progress
//! is off. Deliberately not asked:
//! - `multi_ack` / `multi_ack_detailed`: with `done` in the only round there is nothing to
//!   negotiate, and Hypha answers `multi_ack` with one `ACK <id> continue` line (58 bytes)
//!   per have it holds;
//! - `thin-pack`: the pack must stand alone, it is indexed without `--fix-thin`;
//! - `include-tag`: Hypha advertises it and sends no tags; git fetches the tags it follows in a
//!   second batch.
//!
//! The request is never gzipped: Hypha's git routes do not read `Content-Encoding: gzip`, so
//! git's own requests over 1 KiB (git gzips those) reach them as no wants at all.
//!
//! The answer: the shallow section when `deepen` was sent (`shallow` / `unshallow` lines, a
//! flush), `NAK` or `ACK <id>`, then the pack in side-band packets ([`SideBand`]). Reads from
//! any `Read` the caller hands it; no network here.

use super::parse_id;
use gix::ObjectId;
use std::collections::BTreeSet;
use std::io::{self, Read};

/// The longest pkt-line git writes or reads (LARGE_PACKET_MAX): a length over it is refused.
pub const MAX_PKT: usize = 65520;

/// Shallow, unshallow and ACK lines taken before the pack at most: one per boundary commit,
/// 20 bytes each kept, so a server cannot grow the list without end (1 Mi lines: 20 MiB).
pub const MAX_SECTION_LINES: usize = 1 << 20;

/// One request: what to fetch, what the repository is cut at, and what it has.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub wants: &'a [ObjectId],
    /// `$GIT_DIR/shallow`: the boundaries the server must not walk past for us.
    pub shallow: &'a BTreeSet<ObjectId>,
    /// `deepen <n>`: `--depth`, or [`super::shallow::INFINITE`] for everything.
    pub deepen: Option<u64>,
    pub haves: &'a [ObjectId],
    pub progress: bool,
}

impl Request<'_> {
    /// The request body as git's fetch-pack would write its last round.
    pub fn encode(&self, agent: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(60 * (self.wants.len() + self.haves.len()) + 200);
        for (i, want) in self.wants.iter().enumerate() {
            let line = if i == 0 {
                let progress = if self.progress { "" } else { " no-progress" };
                format!(
                    "want {} side-band-64k ofs-delta{progress} agent={agent}\n",
                    want
                )
            } else {
                format!("want {}\n", want)
            };
            pkt_line(&mut out, line.as_bytes());
        }
        for id in self.shallow {
            pkt_line(&mut out, format!("shallow {id}\n").as_bytes());
        }
        if let Some(depth) = self.deepen {
            pkt_line(&mut out, format!("deepen {depth}\n").as_bytes());
        }
        out.extend_from_slice(b"0000");
        for id in self.haves {
            pkt_line(&mut out, format!("have {id}\n").as_bytes());
        }
        pkt_line(&mut out, b"done\n");
        out
    }
}

/// Append one pkt-line holding `data` (shorter than [`MAX_PKT`]; ours always are).
fn pkt_line(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(format!("{:04x}", data.len() + 4).as_bytes());
    out.extend_from_slice(data);
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("upload-pack sent a malformed answer: {0}")]
    Malformed(String),
    /// `ERR <text>` or side-band channel 3: the server's own words.
    #[error("upload-pack reported an error: {0}")]
    Remote(String),
    #[error("upload-pack's answer ended before the pack")]
    Truncated,
    #[error("upload-pack sent more than {MAX_SECTION_LINES} shallow or ACK lines")]
    TooManyLines,
    #[error("cannot read upload-pack's answer")]
    Io(#[from] io::Error),
}

/// One packet: a flush (`0000`) or a line's bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Pkt {
    Flush,
    Data(Vec<u8>),
}

/// The next packet; `None` at the end of the input (before a length).
pub fn read_pkt(input: &mut impl Read) -> Result<Option<Pkt>, Error> {
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match input.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(Error::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = std::str::from_utf8(&head)
        .ok()
        .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|s| usize::from_str_radix(s, 16).ok())
        .ok_or_else(|| {
            Error::Malformed(format!("bad length {:?}", String::from_utf8_lossy(&head)))
        })?;
    match len {
        0 => Ok(Some(Pkt::Flush)),
        1..=3 => Err(Error::Malformed(format!("bad length {len}"))),
        n if n > MAX_PKT => Err(Error::Malformed(format!("line of {n} bytes"))),
        n => {
            let mut data = vec![0u8; n - 4];
            input.read_exact(&mut data).map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => Error::Truncated,
                _ => Error::Io(e),
            })?;
            Ok(Some(Pkt::Data(data)))
        }
    }
}

/// What the answer said before its pack.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Preamble {
    /// `shallow <id>`: the new boundaries (only when `deepen` was sent).
    pub shallow: Vec<ObjectId>,
    /// `unshallow <id>`: old boundaries whose parents now come (a stock Hypha never says so).
    pub unshallow: Vec<ObjectId>,
}

/// Read the shallow section (when there is one) and the `NAK` / `ACK <id>` line; the pack
/// follows. Tolerates `ACK <id> continue|common|ready` lines before the last word, and a
/// shallow section that is missing (Hypha's answer to wants it cannot resolve has none).
pub fn read_preamble(input: &mut impl Read) -> Result<Preamble, Error> {
    let mut preamble = Preamble::default();
    let mut lines = 0usize;
    loop {
        let line = match read_pkt(input)? {
            None => return Err(Error::Truncated),
            // The end of the shallow section.
            Some(Pkt::Flush) => continue,
            Some(Pkt::Data(data)) => data,
        };
        lines += 1;
        if lines > MAX_SECTION_LINES {
            return Err(Error::TooManyLines);
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches('\n');
        let mut words = text.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("NAK"), None, None) => return Ok(preamble),
            (Some("ACK"), Some(id), rest) if parse_id(id).is_some() => {
                if rest.is_none() {
                    return Ok(preamble);
                }
            }
            (Some("shallow"), Some(id), None) => preamble
                .shallow
                .push(parse_id(id).ok_or_else(|| malformed(text))?),
            (Some("unshallow"), Some(id), None) => preamble
                .unshallow
                .push(parse_id(id).ok_or_else(|| malformed(text))?),
            (Some("ERR"), _, _) => return Err(Error::Remote(text[3..].trim().to_owned())),
            _ => return Err(malformed(text)),
        }
    }
}

fn malformed(line: &str) -> Error {
    let shown: String = line.chars().take(80).collect();
    Error::Malformed(format!("expected shallow, ACK or NAK, got {shown:?}"))
}

/// The pack bytes of a side-band-64k answer: channel 1 is read through, channel 2 (progress)
/// goes to `progress`, channel 3 is the server's error; a flush ends the pack.
pub struct SideBand<R, F> {
    input: R,
    progress: F,
    data: Vec<u8>,
    at: usize,
    ended: bool,
}

impl<R: Read, F: FnMut(&[u8])> SideBand<R, F> {
    pub fn new(input: R, progress: F) -> Self {
        SideBand {
            input,
            progress,
            data: Vec::new(),
            at: 0,
            ended: false,
        }
    }
}

impl<R: Read, F: FnMut(&[u8])> Read for SideBand<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at >= self.data.len() {
            if self.ended {
                return Ok(0);
            }
            match read_pkt(&mut self.input).map_err(io::Error::other)? {
                // A cut answer shows as a truncated pack to the indexer.
                None | Some(Pkt::Flush) => self.ended = true,
                Some(Pkt::Data(mut packet)) => match packet.first() {
                    Some(1) => {
                        packet.remove(0);
                        self.data = packet;
                        self.at = 0;
                    }
                    Some(2) => (self.progress)(&packet[1..]),
                    Some(3) => {
                        let text = String::from_utf8_lossy(&packet[1..]).trim().to_owned();
                        return Err(io::Error::other(Error::Remote(text)));
                    }
                    _ => {
                        return Err(io::Error::other(Error::Malformed(
                            "a side-band packet without a known channel".into(),
                        )))
                    }
                },
            }
        }
        let n = buf.len().min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(text: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        pkt_line(&mut out, text);
        out
    }

    #[test]
    fn request_is_one_round_with_done() {
        let [a, b, s, h] = [0xaa, 0xbb, 0x55, 0x11].map(|n| ObjectId::from([n; 20]));
        let shallow = BTreeSet::from([s]);
        let body = Request {
            wants: &[a, b],
            shallow: &shallow,
            deepen: Some(3),
            haves: &[h],
            progress: false,
        }
        .encode("git-remote-hypha/1");
        let text = String::from_utf8(body).unwrap();
        let a_hex = a.to_string();
        assert_eq!(
            text,
            format!(
                "006fwant {a_hex} side-band-64k ofs-delta no-progress agent=git-remote-hypha/1\n\
                 0032want {}\n0035shallow {}\n000ddeepen 3\n0000\
                 0032have {}\n0009done\n",
                b, s, h
            )
        );
        // No multi_ack: Hypha would answer one ACK line per have it holds.
        assert!(!text.contains("multi_ack") && !text.contains("thin-pack"));
        let plain = Request {
            wants: &[a],
            shallow: &BTreeSet::new(),
            deepen: None,
            haves: &[],
            progress: true,
        }
        .encode("x");
        assert_eq!(
            String::from_utf8(plain).unwrap(),
            format!("0052want {a_hex} side-band-64k ofs-delta agent=x\n00000009done\n")
        );
    }

    #[test]
    fn preamble_reads_shallow_lines_and_the_nak() {
        let (x, y) = ("1".repeat(40), "2".repeat(40));
        let mut answer = Vec::new();
        answer.extend(pkt(format!("shallow {x}\n").as_bytes()));
        answer.extend(pkt(format!("unshallow {y}\n").as_bytes()));
        answer.extend(b"0000");
        answer.extend(pkt(format!("ACK {y} continue\n").as_bytes()));
        answer.extend(pkt(b"NAK\n"));
        answer.extend(pkt(b"\x01PACK"));
        let mut input = &answer[..];
        let got = read_preamble(&mut input).unwrap();
        assert_eq!(got.shallow, vec![ObjectId::from([0x11; 20])]);
        assert_eq!(got.unshallow, vec![ObjectId::from([0x22; 20])]);
        assert_eq!(input, &pkt(b"\x01PACK")[..]);
        // A final ACK ends it too; no shallow section is fine.
        let answer = pkt(format!("ACK {x}\n").as_bytes());
        assert_eq!(
            read_preamble(&mut &answer[..]).unwrap(),
            Preamble::default()
        );
    }

    #[test]
    fn preamble_refuses_what_is_not_protocol() {
        let err = |bytes: &[u8]| read_preamble(&mut &bytes[..]).unwrap_err().to_string();
        // What stateless git met from Hypha: a pack where an ACK/NAK belongs.
        assert!(err(&pkt(b"\x01PACK\x00\x00")).contains("expected shallow, ACK or NAK"));
        assert!(err(b"PACK\x00\x00\x00\x02").contains("bad length"));
        assert!(err(&pkt(b"ERR access denied\n")).contains("access denied"));
        assert!(err(b"0003").contains("bad length 3"));
        assert!(err(b"fff1").contains("line of 65521"));
        assert!(err(b"").contains("ended before the pack"));
        assert!(err(b"0020shallow 12").contains("ended before the pack"));
        assert!(err(&pkt(b"shallow nothex\n")).contains("malformed"));
        // Boundaries are bounded.
        let line = pkt(format!("shallow {}\n", "3".repeat(40)).as_bytes());
        let many = line.repeat(MAX_SECTION_LINES + 1);
        assert!(err(&many).contains("more than"));
    }

    #[test]
    fn side_band_yields_channel_one_and_ends_at_the_flush() {
        let mut answer = Vec::new();
        answer.extend(pkt(b"\x01PA"));
        answer.extend(pkt(b"\x02counting objects\r"));
        answer.extend(pkt(b"\x01CK"));
        answer.extend(b"0000");
        answer.extend(b"trailing");
        let mut said = Vec::new();
        let mut pack = Vec::new();
        SideBand::new(&answer[..], |p: &[u8]| said.extend_from_slice(p))
            .read_to_end(&mut pack)
            .unwrap();
        assert_eq!(pack, b"PACK");
        assert_eq!(said, b"counting objects\r");

        let mut failing = pkt(b"\x01PA");
        failing.extend(pkt(b"\x03out of memory\n"));
        let e = SideBand::new(&failing[..], |_: &[u8]| {})
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(e.to_string().contains("out of memory"), "{e}");
        let e = SideBand::new(&pkt(b"\x07?")[..], |_: &[u8]| {})
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(e.to_string().contains("channel"), "{e}");
    }
}
