//! The upstream response parser and body decoders (`upstream::wire`: the functions the
//! connection's reader calls), fed from a buffer.
//!
//! Input: a flag byte (bit 0: the request was HEAD), a count of split offsets (mod 8),
//! that many big-endian u16 offsets, then the bytes the upstream sent.
//! Asserts: fed in pieces split at the offsets, the answer (head, body, error, and the
//! bytes left after it) is the same as fed whole; bytes past the message's end are left
//! over unchanged, so appending more bytes after a complete message changes nothing but
//! what is left over; and what is left over is always the tail of what was sent.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wxgate::{read_head, BodyDecoder, Framing, Piece};

/// A final head, comparable across feeds.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    status: u16,
    version: String,
    /// Name and value bytes, in order.
    headers: Vec<(String, Vec<u8>)>,
    framing: Framing,
    keep_alive: bool,
}

/// Everything an answer came to, comparable across feeds.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    /// `None` when no final head arrived before the bytes ran out.
    head: Option<Seen>,
    body: Vec<u8>,
    /// The error that ended it, as text.
    error: Option<String>,
    /// Whether the message (head and body) was complete before the bytes ran out.
    ended: bool,
    /// The bytes after the message.
    left: Vec<u8>,
}

/// Feeds `pieces` one after another, as a connection's reads would, then the close.
fn run(pieces: &[&[u8]], head_only: bool) -> Outcome {
    let mut out = Outcome {
        head: None,
        body: Vec::new(),
        error: None,
        ended: false,
        left: Vec::new(),
    };
    let mut buf = BytesMut::new();
    let mut rest = pieces.iter();
    let head = loop {
        match read_head(&mut buf, head_only) {
            Err(e) => {
                out.error = Some(e.to_string());
                return out;
            }
            Ok(Some(head)) => break head,
            Ok(None) => match rest.next() {
                Some(piece) => buf.extend_from_slice(piece),
                None => return out,
            },
        }
    };
    let headers = head
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    out.head = Some(Seen {
        status: head.status.as_u16(),
        version: format!("{:?}", head.version),
        headers,
        framing: head.framing,
        keep_alive: head.keep_alive,
    });
    if head.status == 101 {
        // A switched connection: every byte after the head is the tunnel's.
        out.ended = true;
        out.left = remaining(&buf, rest);
        return out;
    }
    let mut decoder = BodyDecoder::new(head.framing);
    loop {
        match decoder.decode(&mut buf) {
            Err(e) => {
                out.error = Some(e.to_string());
                return out;
            }
            Ok(Piece::Data(data)) => {
                assert!(!data.is_empty(), "an empty data piece");
                out.body.extend_from_slice(&data);
            }
            Ok(Piece::End) => {
                out.ended = true;
                out.left = remaining(&buf, rest);
                return out;
            }
            Ok(Piece::NeedMore) => match rest.next() {
                Some(piece) => buf.extend_from_slice(piece),
                None => {
                    if let Err(e) = decoder.at_close() {
                        out.error = Some(e.to_string());
                    }
                    out.left = buf.to_vec();
                    return out;
                }
            },
        }
    }
}

fn remaining<'a>(buf: &[u8], rest: impl Iterator<Item = &'a &'a [u8]>) -> Vec<u8> {
    let mut left = buf.to_vec();
    for piece in rest {
        left.extend_from_slice(piece);
    }
    left
}

/// `wire` cut at `offsets` (clamped, sorted; repeats give empty pieces).
fn split<'a>(wire: &'a [u8], offsets: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = offsets.iter().map(|&o| o.min(wire.len())).collect();
    cuts.sort_unstable();
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut from = 0;
    for cut in cuts {
        pieces.push(&wire[from..cut]);
        from = cut;
    }
    pieces.push(&wire[from..]);
    pieces
}

/// What is sent after a complete message in the "never reads past its end" check.
const NEXT: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nx";

fuzz_target!(|data: &[u8]| {
    let [flags, count, rest @ ..] = data else {
        return;
    };
    let head_only = flags & 1 != 0;
    let count = usize::from(count % 8);
    if rest.len() < count * 2 {
        return;
    }
    let (offsets, wire) = rest.split_at(count * 2);
    let offsets: Vec<usize> = offsets
        .chunks_exact(2)
        .map(|o| usize::from(u16::from_be_bytes([o[0], o[1]])))
        .collect();

    let whole = run(&[wire], head_only);
    assert!(
        wire.ends_with(&whole.left),
        "left over bytes that were not sent last: {whole:?}"
    );
    let pieces = split(wire, &offsets);
    let split_run = run(&pieces, head_only);
    assert_eq!(split_run, whole, "split at {offsets:?} differs from whole");

    let ended = whole.ended && whole.error.is_none();
    let framing = whole.head.as_ref().map(|h| h.framing);
    if ended && framing != Some(Framing::Eof) {
        let more = [wire, NEXT].concat();
        let mut expected = whole;
        expected.left.extend_from_slice(NEXT);
        assert_eq!(
            run(&[&more], head_only),
            expected,
            "bytes after the message changed its reading"
        );
    }
});
