//! The response parser and body decoders fed from a buffer instead of a connection, so the
//! fuzz targets in `fuzz/` can split an answer wherever they like. The functions called are
//! the ones `read_head` and the response body call on the connection's buffer.

use std::io;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode, Version};

use super::body::{Chunk, Decoder, Step};
use super::response::{final_head, BodyKind};
use super::Error;

/// A final response head, as the gateway parsed it.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// Whether the connection may carry another request after this answer.
    pub keep_alive: bool,
}

/// How the body after a head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    Eof,
}

/// The final head at the start of `buf`, removed from it with any 1xx before it; `None`
/// while it is incomplete. Feeding more bytes and calling again is what `read_head` does.
pub fn read_head(buf: &mut BytesMut, head_only: bool) -> Result<Option<Head>, Error> {
    Ok(final_head(buf, head_only)?.map(|parsed| Head {
        status: parsed.status,
        version: parsed.version,
        headers: parsed.headers,
        framing: match parsed.kind {
            BodyKind::Empty => Framing::Empty,
            BodyKind::Length(n) => Framing::Length(n),
            BodyKind::Chunked => Framing::Chunked,
            BodyKind::Eof => Framing::Eof,
        },
        keep_alive: parsed.keep_alive,
    }))
}

/// What a [`BodyDecoder`] made of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    Data(Bytes),
    End,
    NeedMore,
}

/// The body decoder the response body runs for a [`Framing`].
pub struct BodyDecoder(Decoder);

impl BodyDecoder {
    pub fn new(framing: Framing) -> Self {
        // As `Parsed::into_response` chooses; an empty body is a length of zero.
        Self(match framing {
            Framing::Empty => Decoder::Length(0),
            Framing::Length(n) => Decoder::Length(n),
            Framing::Chunked => Decoder::Chunked(Chunk::Size),
            Framing::Eof => Decoder::Eof,
        })
    }

    /// Takes what it can from the front of `buf`, never a byte past the body's framing.
    pub fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Piece> {
        Ok(match self.0.decode(buf)? {
            Step::Data(data) => Piece::Data(data),
            Step::End => Piece::End,
            Step::NeedMore => Piece::NeedMore,
        })
    }

    /// The connection ended: the end of a body read to EOF, an error for the other framings.
    pub fn at_close(&mut self) -> io::Result<()> {
        self.0.at_close().map(drop)
    }
}
