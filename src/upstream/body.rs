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
mod tests;
