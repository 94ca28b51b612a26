//! `upload_pack`: the reader of a stock Hypha's upload-pack answer (`negotiate::upload_pack::
//! {read_pkt, read_preamble, SideBand}`), as the helper's fetch uses it (`helper::smart_fetch::
//! read_answer`): the preamble through a `BufReader`, then the pack out of the side-band, read
//! in pieces of varying size, and the helper's 12-byte header read.
//!
//! Input: two selector bytes, then the answer. The first byte shapes the reader under the
//! parser (how many bytes each `read` returns, whether some reads are `Interrupted`, the
//! `BufReader`'s capacity), the second the sizes of the reads made on the side-band reader
//! and whether the helper's header-then-copy path is taken.
//!
//! Checks: never a panic; each parser agrees with an independent reference over the bytes
//! (`reference_*` below): `read_pkt` gives the same packets (a line at most `MAX_PKT - 4`
//! bytes) and the same kind of error, and the packets re-encode to exactly the bytes read;
//! `read_preamble` gives the same shallow/unshallow ids or the same kind of error (the
//! server's `ERR` text included) and leaves the input just after its `NAK`/`ACK` line;
//! `SideBand` yields exactly the channel-1 bytes before the first flush, hands channel 2 to
//! the progress callback packet by packet, and fails with the same error as the reference
//! (channel 3's text, an unknown channel, a malformed or cut packet), the error carried as
//! an `upload_pack::Error` the helper can take back out of the `io::Error`.

use gix::ObjectId;
use hypha_git::negotiate::upload_pack::{self, read_pkt, read_preamble, Error, Pkt, SideBand};
use std::io::{self, BufReader, Read};

pub fn run(data: &[u8]) {
    let [shape, reads, answer @ ..] = data else {
        return;
    };
    packets(answer, *shape);
    let expected = reference_preamble(answer);
    let mut input = Chunked::new(answer, *shape);
    let got = read_preamble(&mut input);
    let _ = got.as_ref().map_err(|e| e.to_string());
    match (&got, &expected) {
        (Ok(got), Ok((want, rest))) => {
            assert_eq!(got, want);
            assert_eq!(input.rest(), *rest, "read_preamble stopped elsewhere");
        }
        (Err(e), Err(want)) => assert_eq!(&Kind::of(e), want, "{e}"),
        _ => panic!("read_preamble {got:?}, the reference {expected:?}"),
    }
    // The pack after the preamble, as the helper reads it (or the whole answer when the
    // preamble failed, so the side-band reader runs on every input).
    let rest = match &expected {
        Ok((_, rest)) => *rest,
        Err(_) => answer,
    };
    side_band(rest, *shape, *reads);
}

/// The error kinds the reference tells apart.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Malformed,
    Remote(String),
    Truncated,
    TooManyLines,
    /// The harness's own: the helper's 12-byte header read met a clean end first.
    ShortHeader,
}

impl Kind {
    fn of(e: &Error) -> Kind {
        match e {
            Error::Malformed(_) => Kind::Malformed,
            Error::Remote(text) => Kind::Remote(text.clone()),
            Error::Truncated => Kind::Truncated,
            Error::TooManyLines => Kind::TooManyLines,
            Error::Io(e) => panic!("an in-memory answer gave an I/O error: {e}"),
        }
    }
}

/// A reader over the answer that returns at most a few bytes per call and, if asked, fails
/// every third call with `Interrupted` (which every reader must retry).
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
    interrupt: bool,
    calls: usize,
}

impl<'a> Chunked<'a> {
    fn new(data: &'a [u8], shape: u8) -> Self {
        let chunk = match shape & 7 {
            0 => usize::MAX,
            1 => 1,
            2 => 2,
            3 => 3,
            4 => 5,
            5 => 13,
            6 => 4096,
            _ => 65536,
        };
        Chunked {
            data,
            chunk,
            interrupt: shape & 8 != 0,
            calls: 0,
        }
    }

    fn rest(&self) -> &'a [u8] {
        self.data
    }
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        if self.interrupt && self.calls.is_multiple_of(3) {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = buf.len().min(self.chunk).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

enum RefPkt<'a> {
    Flush,
    Data(&'a [u8]),
}

/// The next packet of `input` as gitprotocol-common(5) reads it, or the error kind.
fn reference_pkt<'a>(input: &mut &'a [u8]) -> Result<Option<RefPkt<'a>>, Kind> {
    if input.is_empty() {
        return Ok(None);
    }
    if input.len() < 4 {
        return Err(Kind::Truncated);
    }
    let mut len = 0usize;
    for &b in &input[..4] {
        let digit = (b as char).to_digit(16).ok_or(Kind::Malformed)?;
        len = len * 16 + digit as usize;
    }
    if len == 0 {
        *input = &input[4..];
        return Ok(Some(RefPkt::Flush));
    }
    if !(4..=upload_pack::MAX_PKT).contains(&len) {
        return Err(Kind::Malformed);
    }
    if input.len() < len {
        return Err(Kind::Truncated);
    }
    let data = &input[4..len];
    *input = &input[len..];
    Ok(Some(RefPkt::Data(data)))
}

/// `read_pkt` against the reference, packet by packet, through the shaped reader.
fn packets(answer: &[u8], shape: u8) {
    let mut input = Chunked::new(answer, shape);
    let mut reference = answer;
    let mut encoded = Vec::new();
    loop {
        let got = read_pkt(&mut input);
        let want = reference_pkt(&mut reference);
        match (got, want) {
            (Ok(None), Ok(None)) => break,
            (Ok(Some(Pkt::Flush)), Ok(Some(RefPkt::Flush))) => encoded.extend_from_slice(b"0000"),
            (Ok(Some(Pkt::Data(got))), Ok(Some(RefPkt::Data(want)))) => {
                assert!(got.len() <= upload_pack::MAX_PKT - 4);
                assert_eq!(got, want);
                encoded.extend_from_slice(format!("{:04x}", got.len() + 4).as_bytes());
                encoded.extend_from_slice(&got);
            }
            (Err(e), Err(want)) => {
                assert_eq!(Kind::of(&e), want, "{e}");
                let _ = e.to_string();
                break;
            }
            (got, want) => panic!(
                "read_pkt {got:?}, the reference {}",
                match want {
                    Ok(None) => "the end".to_owned(),
                    Ok(Some(RefPkt::Flush)) => "a flush".to_owned(),
                    Ok(Some(RefPkt::Data(d))) => format!("{d:?}"),
                    Err(k) => format!("{k:?}"),
                }
            ),
        }
        // What was read is exactly what the packets say (hex case aside).
        let read = &answer[..answer.len() - input.rest().len()];
        assert_eq!(read.len(), encoded.len());
        assert!(read.eq_ignore_ascii_case(&encoded));
    }
}

/// The shallow section and the `NAK`/`ACK` line: the boundaries, and the rest of the input
/// (the pack), or the error kind.
#[allow(clippy::type_complexity)]
fn reference_preamble(answer: &[u8]) -> Result<(upload_pack::Preamble, &[u8]), Kind> {
    let mut input = answer;
    let mut preamble = upload_pack::Preamble::default();
    let mut lines = 0usize;
    loop {
        let line = match reference_pkt(&mut input)? {
            None => return Err(Kind::Truncated),
            Some(RefPkt::Flush) => continue,
            Some(RefPkt::Data(line)) => line,
        };
        lines += 1;
        if lines > upload_pack::MAX_SECTION_LINES {
            return Err(Kind::TooManyLines);
        }
        let text = String::from_utf8_lossy(line);
        let mut text: &str = &text;
        while let Some(t) = text.strip_suffix('\n') {
            text = t;
        }
        let (word, args) = match text.split_once(' ') {
            Some((w, a)) => (w, Some(a)),
            None => (text, None),
        };
        match (word, args) {
            ("NAK", None) => return Ok((preamble, input)),
            ("ACK", Some(args)) => {
                let (id, more) = match args.split_once(' ') {
                    Some((id, _)) => (id, true),
                    None => (args, false),
                };
                reference_id(id).ok_or(Kind::Malformed)?;
                if !more {
                    return Ok((preamble, input));
                }
            }
            ("shallow", Some(id)) => preamble
                .shallow
                .push(reference_id(id).ok_or(Kind::Malformed)?),
            ("unshallow", Some(id)) => preamble
                .unshallow
                .push(reference_id(id).ok_or(Kind::Malformed)?),
            ("ERR", _) => return Err(Kind::Remote(text["ERR".len()..].trim().to_owned())),
            _ => return Err(Kind::Malformed),
        }
    }
}

fn reference_id(s: &str) -> Option<ObjectId> {
    if s.len() != 40 {
        return None;
    }
    let mut id = [0u8; 20];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        id[i] = (hi * 16 + lo) as u8;
    }
    Some(ObjectId::from(id))
}

/// What the side-band holds: the pack bytes and progress packets before the first flush, and
/// how it ends (cleanly, or with an error).
fn reference_side_band(mut input: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>, Result<(), Kind>) {
    let (mut pack, mut progress) = (Vec::new(), Vec::new());
    let end = loop {
        match reference_pkt(&mut input) {
            Err(kind) => break Err(kind),
            Ok(None | Some(RefPkt::Flush)) => break Ok(()),
            Ok(Some(RefPkt::Data(packet))) => match packet.split_first() {
                Some((1, bytes)) => pack.extend_from_slice(bytes),
                Some((2, said)) => progress.push(said.to_vec()),
                Some((3, text)) => {
                    break Err(Kind::Remote(
                        String::from_utf8_lossy(text).trim().to_owned(),
                    ))
                }
                _ => break Err(Kind::Malformed),
            },
        }
    };
    (pack, progress, end)
}

/// The error inside a side-band `io::Error`, as the helper takes it out (`io_or_protocol`).
fn inner(e: io::Error) -> Kind {
    assert_ne!(e.kind(), io::ErrorKind::Interrupted);
    let _ = e.to_string();
    let inner = e
        .into_inner()
        .unwrap_or_else(|| panic!("a side-band error without an upload_pack::Error"));
    let inner = inner
        .downcast::<Error>()
        .unwrap_or_else(|other| panic!("a side-band error that is no upload_pack::Error: {other}"));
    Kind::of(&inner)
}

fn side_band(rest: &[u8], shape: u8, reads: u8) {
    let (want_pack, want_progress, want_end) = reference_side_band(rest);
    let capacity = match shape >> 4 & 3 {
        0 => 1 << 16,
        1 => 1,
        2 => 7,
        _ => 300,
    };
    let input = BufReader::with_capacity(capacity, Chunked::new(rest, shape));
    let mut progress = Vec::new();
    let mut reader = SideBand::new(input, |said: &[u8]| progress.push(said.to_vec()));
    let mut pack = Vec::new();
    let mut lost = false;
    let end = if reads & 0x80 != 0 {
        helper_path(&mut reader, &mut pack, &mut lost)
    } else {
        // Reads of a size from a small cycle the selector picks (0 included: nothing read).
        let sizes: [usize; 4] = match reads & 3 {
            0 => [1, 2, 3, 0],
            1 => [12, 1, 4096, 7],
            2 => [65536, 65536, 65536, 65536],
            _ => [5, 65519, 1, 17],
        };
        let mut buf = vec![0u8; 65536];
        let mut i = (reads >> 2) as usize;
        loop {
            let size = sizes[i % sizes.len()];
            i += 1;
            match reader.read(&mut buf[..size]) {
                Ok(0) if size > 0 => break Ok(()),
                Ok(n) => {
                    assert!(n <= size);
                    pack.extend_from_slice(&buf[..n]);
                }
                Err(e) => break Err(inner(e)),
            }
        }
    };
    // Reads after the end or an error do not panic (the helper makes none).
    for _ in 0..3 {
        let _ = reader.read(&mut [0u8; 64]);
    }
    drop(reader);
    if lost {
        // The helper's header read ended or failed before 12 bytes of pack.
        assert!(want_pack.len() < 12, "{} bytes of pack", want_pack.len());
        match &end {
            Err(Kind::ShortHeader) => assert!(want_end.is_ok(), "{want_end:?}"),
            end => assert_eq!(end, &want_end),
        }
    } else {
        assert_eq!(end, want_end);
        assert_eq!(pack, want_pack, "side-band pack bytes");
    }
    // Progress packets arrive one call each, all of them before the end; after an error
    // the reads above may go on past it, so only the prefix is certain then.
    if want_end.is_ok() {
        assert_eq!(progress, want_progress, "side-band progress");
    } else {
        assert!(progress.len() >= want_progress.len());
        assert_eq!(progress[..want_progress.len()], want_progress[..]);
    }
}

/// The helper's reads (`read_answer`): the 12-byte header with `read_exact`, then the rest
/// with `io::copy`.
fn helper_path(reader: &mut impl Read, pack: &mut Vec<u8>, lost: &mut bool) -> Result<(), Kind> {
    let mut header = [0u8; 12];
    match reader.read_exact(&mut header) {
        Ok(()) => pack.extend_from_slice(&header),
        // What `read_exact` took before an end or an error is lost in `header`.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            *lost = true;
            return Err(Kind::ShortHeader);
        }
        Err(e) => {
            *lost = true;
            return Err(inner(e));
        }
    }
    io::copy(reader, pack).map(|_| ()).map_err(inner)
}
