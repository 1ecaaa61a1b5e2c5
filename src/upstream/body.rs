//! The upstream's response body as it arrives: whole when it came with the head, else
//! decoded from the connection (by length, chunked, or to the end of the connection),
//! with a stall timeout, and the connection handed back to its pool at the end.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tokio::net::TcpStream;

use super::pool::{Pool, UpstreamConn};

/// A chunk-size line (with extensions) or a trailer section longer than this is refused.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// The upstream's response body, as it arrives.
pub struct UpstreamBody {
    pub(super) state: State,
}

pub(super) enum State {
    Done,
    Full(Option<Bytes>),
    Stream(Box<Streaming>),
    /// A 101 answer: the connection (and the 101's headers as received) belong to the
    /// tunnel, not to a body.
    Upgrade(Box<(UpstreamConn, HeaderMap)>),
}

pub(super) struct Streaming {
    pub(super) conn: UpstreamConn,
    pub(super) decoder: Decoder,
    /// Where the connection goes once the body has been read, if it may be reused.
    pub(super) pool: Option<Arc<Pool>>,
    pub(super) stall_timeout: Duration,
    /// Armed the first time the upstream makes the body wait; pushed back on each read.
    pub(super) stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// How much of a response body is left, and how it is delimited (RFC 9112 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decoder {
    Length(u64),
    Chunked(Chunk),
    Eof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// Reading the trailer section, of which this many bytes are read.
    Trailers(usize),
}

/// The connection of a 101 answer, never pooled: it is tunnelled, or dropped (closed).
pub struct Switched {
    pub stream: TcpStream,
    /// Bytes already read past the response head: the upstream's first tunnel bytes.
    pub early: Bytes,
    /// The 101's headers as the upstream sent them, hop-by-hop ones included.
    pub headers: HeaderMap,
}

impl UpstreamBody {
    /// The upgraded connection of a 101 answer.
    pub fn take_upgrade(&mut self) -> Option<Switched> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Upgrade(upgraded) => {
                let (UpstreamConn { io, buf }, headers) = *upgraded;
                Some(Switched {
                    stream: io,
                    early: buf.freeze(),
                    headers,
                })
            }
            other => {
                self.state = other;
                None
            }
        }
    }
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl Streaming {
    /// The next piece of body, `None` at its end.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            match self.decoder.decode(&mut self.conn.buf) {
                Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(data))),
                Ok(Step::End) => return Poll::Ready(None),
                Ok(Step::NeedMore) => {}
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
            if ready!(self.conn.poll_fill(cx))? == 0 {
                return Poll::Ready(self.decoder.at_close().err().map(Err));
            }
        }
    }
}

/// What the decoder made of the bytes it was given.
#[derive(Debug, PartialEq)]
pub(super) enum Step {
    Data(Bytes),
    End,
    /// Nothing more can be decoded until more bytes arrive.
    NeedMore,
}

impl Decoder {
    /// Takes what it can from the front of `buf`: body data, the end of the body, or the
    /// need for more bytes. It never consumes a byte past the body's framing, so what
    /// follows (a next response, stray bytes) stays in `buf`.
    pub(super) fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Step> {
        loop {
            match *self {
                Decoder::Length(0) => return Ok(Step::End),
                Decoder::Length(remaining) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let n = (buf.len() as u64).min(remaining) as usize;
                    *self = Decoder::Length(remaining - n as u64);
                    return Ok(Step::Data(buf.split_to(n).freeze()));
                }
                Decoder::Eof if buf.is_empty() => return Ok(Step::NeedMore),
                Decoder::Eof => return Ok(Step::Data(buf.split().freeze())),
                Decoder::Chunked(chunk) => {
                    if let Some(step) = self.chunked(chunk, buf)? {
                        return Ok(step);
                    }
                }
            }
        }
    }

    /// The upstream closed the connection: the end of a body read to EOF, an error for
    /// any other framing.
    pub(super) fn at_close(&mut self) -> io::Result<Step> {
        match self {
            Decoder::Eof | Decoder::Length(0) => {
                *self = Decoder::Length(0);
                Ok(Step::End)
            }
            _ => Err(invalid("upstream closed inside the body")),
        }
    }

    /// One step of chunked decoding; `None` when it moved on and can go on at once.
    fn chunked(&mut self, chunk: Chunk, buf: &mut BytesMut) -> io::Result<Option<Step>> {
        match chunk {
            Chunk::Size => {
                // The same limit whether the line came whole or in pieces: without its CRLF
                // yet, the line is at least as long as the buffer less a final CR.
                let Some(end) = find_crlf(buf) else {
                    return if buf.len().saturating_sub(1) > MAX_CHUNK_LINE {
                        Err(invalid("chunk-size line too long"))
                    } else {
                        Ok(Some(Step::NeedMore))
                    };
                };
                if end > MAX_CHUNK_LINE {
                    return Err(invalid("chunk-size line too long"));
                }
                let size = chunk_size(&buf[..end])?;
                buf.advance(end + 2);
                *self = Decoder::Chunked(if size == 0 {
                    Chunk::Trailers(0)
                } else {
                    Chunk::Data(size)
                });
                Ok(None)
            }
            Chunk::Data(remaining) => {
                if buf.is_empty() {
                    return Ok(Some(Step::NeedMore));
                }
                let n = (buf.len() as u64).min(remaining) as usize;
                let data = buf.split_to(n).freeze();
                let left = remaining - n as u64;
                *self = Decoder::Chunked(if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left)
                });
                Ok(Some(Step::Data(data)))
            }
            Chunk::DataEnd => {
                if buf.len() < 2 {
                    return Ok(Some(Step::NeedMore));
                }
                if &buf[..2] != b"\r\n" {
                    return Err(invalid("chunk data not followed by CRLF"));
                }
                buf.advance(2);
                *self = Decoder::Chunked(Chunk::Size);
                Ok(None)
            }
            Chunk::Trailers(mut taken) => {
                // Trailer fields are read and dropped, up to the empty line; the section is
                // bounded as a whole, counted alike however it arrives.
                loop {
                    let Some(end) = find_crlf(buf) else {
                        *self = Decoder::Chunked(Chunk::Trailers(taken));
                        return if taken + buf.len() + 1 > MAX_TRAILER_BYTES {
                            Err(invalid("trailer section too long"))
                        } else {
                            Ok(Some(Step::NeedMore))
                        };
                    };
                    taken += end + 2;
                    if taken > MAX_TRAILER_BYTES {
                        return Err(invalid("trailer section too long"));
                    }
                    buf.advance(end + 2);
                    if end == 0 {
                        *self = Decoder::Length(0);
                        return Ok(Some(Step::End));
                    }
                }
            }
        }
    }
}

/// The size of a chunk-size line (extensions ignored). At most 15 hex digits, so that the
/// size can never overflow (RUSTSEC-2021-0079 was a chunk-size overflow in hyper).
fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let digits = line
        .iter()
        .position(|b| *b == b';' || *b == b' ' || *b == b'\t')
        .map_or(line, |i| &line[..i]);
    if digits.is_empty() || digits.len() > 15 {
        return Err(invalid("bad chunk size"));
    }
    let mut size: u64 = 0;
    for &d in digits {
        let v = (d as char)
            .to_digit(16)
            .ok_or_else(|| invalid("bad chunk size"))?;
        size = size * 16 + u64::from(v);
    }
    Ok(size)
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        let next = match &mut this.state {
            State::Done | State::Upgrade(_) => return Poll::Ready(None),
            State::Full(data) => {
                let data = data.take();
                this.state = State::Done;
                return Poll::Ready(data.map(|d| Ok(Frame::data(d))));
            }
            State::Stream(streaming) => match streaming.poll_next(cx) {
                Poll::Ready(next) => {
                    if let Some(stall) = &mut streaming.stall {
                        let deadline = tokio::time::Instant::now() + streaming.stall_timeout;
                        stall.as_mut().reset(deadline);
                    }
                    next
                }
                Poll::Pending => {
                    let timeout = streaming.stall_timeout;
                    let stall = streaming
                        .stall
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    ready!(stall.as_mut().poll(cx));
                    // The upstream stopped sending: the response is cut off (the client's
                    // connection closes) and this connection is not reused.
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the upstream stopped sending the response body",
                    ))));
                }
            },
        };
        match next {
            Some(Ok(data)) => {
                if let State::Stream(streaming) = &this.state {
                    if matches!(streaming.decoder, Decoder::Length(0)) {
                        this.finish();
                    }
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Some(Err(e)) => {
                this.state = State::Done;
                Poll::Ready(Some(Err(e)))
            }
            None => {
                this.finish();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            State::Done | State::Upgrade(_) => true,
            State::Full(data) => data.is_none(),
            State::Stream(s) => matches!(s.decoder, Decoder::Length(0)),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Done | State::Upgrade(_) => SizeHint::with_exact(0),
            State::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            State::Stream(s) => match s.decoder {
                Decoder::Length(n) => SizeHint::with_exact(n),
                _ => SizeHint::default(),
            },
        }
    }
}

impl UpstreamBody {
    /// The body was read to its end: the connection goes back to its pool if it may.
    fn finish(&mut self) {
        if let State::Stream(streaming) = std::mem::replace(&mut self.state, State::Done) {
            let Streaming { conn, pool, .. } = *streaming;
            if let Some(pool) = pool {
                pool.checkin(conn);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `wire` fed in two pieces, split at `at`: the body's bytes, and what the
    /// decoder left in the buffer (everything past the body's framing).
    fn decode_split(
        mut decoder: Decoder,
        wire: &[u8],
        at: usize,
    ) -> io::Result<(Vec<u8>, Vec<u8>)> {
        let mut buf = BytesMut::from(&wire[..at]);
        let mut body = Vec::new();
        let mut rest = &wire[at..];
        loop {
            match decoder.decode(&mut buf)? {
                Step::Data(data) => body.extend_from_slice(&data),
                Step::End => return Ok((body, [&buf[..], rest].concat())),
                Step::NeedMore if rest.is_empty() => {
                    decoder.at_close()?;
                    return Ok((body, buf.to_vec()));
                }
                Step::NeedMore => {
                    buf.extend_from_slice(rest);
                    rest = &[];
                }
            }
        }
    }

    /// The same outcome whatever the split, and the same as fed whole.
    fn decode_every_split(decoder: Decoder, wire: &[u8]) -> io::Result<(Vec<u8>, Vec<u8>)> {
        let whole = decode_split(decoder, wire, wire.len());
        // Every offset of a small body; a sample (and both ends) of a large one, whose
        // every-offset run would be quadratic.
        let stride = if wire.len() > 1024 { 61 } else { 1 };
        let tail = wire.len().saturating_sub(8);
        for at in (0..wire.len()).step_by(stride).chain(tail..wire.len()) {
            let split = decode_split(decoder, wire, at);
            assert_eq!(
                split.as_ref().map_err(|e| e.to_string()),
                whole.as_ref().map_err(|e| e.to_string()),
                "split at {at} of {:?}",
                String::from_utf8_lossy(wire)
            );
        }
        whole
    }

    const NEXT: &[u8] = b"HTTP/1.1 200 OK\r\n";

    #[test]
    fn chunked_bodies_decode_alike_at_every_split_and_stop_at_their_end() {
        let cases: [(&[u8], &[u8]); 4] = [
            (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
            // Extensions, upper-case hex, and trailers (dropped).
            (
                b"5;name=value\r\nhello\r\nA; x\r\n0123456789\r\n0\r\nx-trailer: t\r\ny: z\r\n\r\n",
                b"hello0123456789",
            ),
            // Fifteen hex digits (the most) holding a small size.
            (b"000000000000003\r\nabc\r\n0\r\n\r\n", b"abc"),
            (b"0\r\n\r\n", b""),
        ];
        for (encoded, body) in cases {
            let wire = [encoded, NEXT].concat();
            let (decoded, left) =
                decode_every_split(Decoder::Chunked(Chunk::Size), &wire).expect("valid");
            assert_eq!(decoded, body);
            assert_eq!(left, NEXT, "read past the body's framing");
        }
    }

    #[test]
    fn bad_chunked_framing_is_refused_at_every_split() {
        for wire in [
            // Sixteen hex digits: refused before any arithmetic could overflow.
            &b"0000000000000003\r\nabc\r\n0\r\n\r\n"[..],
            b"ffffffffffffffff\r\nabc\r\n0\r\n\r\n",
            // Chunk data not followed by CRLF.
            b"3\r\nabcX\r\n0\r\n\r\n",
            b"3\r\nabc\n0\r\n\r\n",
            // Not a size at all, a negative one, an empty one.
            b"xyz\r\nabc\r\n0\r\n\r\n",
            b"-3\r\nabc\r\n0\r\n\r\n",
            b"\r\nabc\r\n0\r\n\r\n",
            // The connection ends inside the body.
            b"5\r\nhel",
        ] {
            assert!(
                decode_every_split(Decoder::Chunked(Chunk::Size), wire).is_err(),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn over_long_chunk_lines_and_trailers_are_refused() {
        let long_line = [
            b"5;".as_ref(),
            &[b'x'; MAX_CHUNK_LINE],
            b"\r\nhello\r\n0\r\n\r\n",
        ]
        .concat();
        assert!(decode_every_split(Decoder::Chunked(Chunk::Size), &long_line).is_err());
        let trailer = [
            b"0\r\nx: ".as_ref(),
            &[b'y'; MAX_TRAILER_BYTES],
            b"\r\n\r\n",
        ]
        .concat();
        assert!(decode_every_split(Decoder::Chunked(Chunk::Size), &trailer).is_err());
        // Just inside both limits: accepted, at every split.
        let longest = [
            b"3;".as_ref(),
            &[b'x'; MAX_CHUNK_LINE - 2],
            b"\r\nabc\r\n0\r\n",
        ]
        .concat();
        let fits = [&longest[..], &[b'y'; MAX_TRAILER_BYTES - 4], b"\r\n\r\n"].concat();
        let (body, _) = decode_every_split(Decoder::Chunked(Chunk::Size), &fits).expect("fits");
        assert_eq!(body, b"abc");
    }

    #[test]
    fn length_bodies_stop_at_their_length_and_must_be_whole() {
        let wire = [b"hello".as_ref(), NEXT].concat();
        let (body, left) = decode_every_split(Decoder::Length(5), &wire).expect("valid");
        assert_eq!((body.as_slice(), left.as_slice()), (&b"hello"[..], NEXT));
        assert!(decode_every_split(Decoder::Length(10), b"hello").is_err());
    }

    #[test]
    fn bodies_to_eof_take_everything_until_the_connection_ends() {
        let (body, left) = decode_every_split(Decoder::Eof, b"until close").expect("valid");
        assert_eq!(
            (body.as_slice(), left.as_slice()),
            (&b"until close"[..], &b""[..])
        );
    }
}
