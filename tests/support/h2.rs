//! A raw HTTP/2 client (RFC 9113) for what no well-behaved client sends: frames written by
//! hand (a 9-byte header, then the payload), over cleartext or TLS, and read back one by
//! one with a deadline, answers' header blocks decoded so their `:status` can be read.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout_at, Instant};

use super::hpack::{self, Field};
use super::raw::Raw;

/// How a client with prior knowledge begins (3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types (6).
pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags.
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
}

/// Error codes of RST_STREAM and GOAWAY (7).
pub mod code {
    pub const NO_ERROR: u32 = 0x0;
    pub const PROTOCOL_ERROR: u32 = 0x1;
    pub const FLOW_CONTROL_ERROR: u32 = 0x3;
    pub const FRAME_SIZE_ERROR: u32 = 0x6;
    pub const REFUSED_STREAM: u32 = 0x7;
    pub const CANCEL: u32 = 0x8;
    pub const COMPRESSION_ERROR: u32 = 0x9;
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;
}

/// SETTINGS parameters (6.5.2).
pub mod setting {
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// One frame, as sent or received. A received HEADERS frame also carries its decoded fields.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
    pub fields: Vec<Field>,
}

impl Frame {
    pub fn new(kind: u8, flags: u8, stream: u32, payload: Vec<u8>) -> Self {
        Self {
            kind,
            flags,
            stream,
            payload,
            fields: Vec::new(),
        }
    }

    pub fn settings(values: &[(u16, u32)]) -> Self {
        let payload = values
            .iter()
            .flat_map(|(id, value)| id.to_be_bytes().into_iter().chain(value.to_be_bytes()))
            .collect();
        Self::new(kind::SETTINGS, 0, 0, payload)
    }

    pub fn settings_ack() -> Self {
        Self::new(kind::SETTINGS, flag::ACK, 0, Vec::new())
    }

    /// A HEADERS frame carrying `block` (a whole block unless `flags` lacks END_HEADERS).
    pub fn headers(stream: u32, flags: u8, block: Vec<u8>) -> Self {
        Self::new(kind::HEADERS, flags, stream, block)
    }

    /// A complete `GET path` on `stream`, with no body.
    pub fn get(stream: u32, path: &str) -> Self {
        let block = hpack::request("GET", path, &[]);
        Self::headers(stream, flag::END_HEADERS | flag::END_STREAM, block)
    }

    pub fn continuation(stream: u32, end: bool, block: Vec<u8>) -> Self {
        let flags = if end { flag::END_HEADERS } else { 0 };
        Self::new(kind::CONTINUATION, flags, stream, block)
    }

    pub fn rst(stream: u32, code: u32) -> Self {
        Self::new(kind::RST_STREAM, 0, stream, code.to_be_bytes().to_vec())
    }

    pub fn ping(data: u64) -> Self {
        Self::new(kind::PING, 0, 0, data.to_be_bytes().to_vec())
    }

    pub fn window_update(stream: u32, increment: u32) -> Self {
        Self::new(
            kind::WINDOW_UPDATE,
            0,
            stream,
            increment.to_be_bytes().to_vec(),
        )
    }

    /// The wire form: length (24 bits), type, flags, stream id (31 bits), payload.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let len = u32::try_from(self.payload.len()).expect("frame length");
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.extend_from_slice(&[self.kind, self.flags]);
        out.extend_from_slice(&(self.stream & 0x7fff_ffff).to_be_bytes());
        out.extend_from_slice(&self.payload);
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The error code of a RST_STREAM or GOAWAY frame.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            kind::RST_STREAM => 0,
            kind::GOAWAY => 4,
            _ => return None,
        };
        let bytes = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes(bytes.try_into().ok()?))
    }

    /// The debug data of a GOAWAY frame (h2 names the limit a client broke there).
    pub fn debug_data(&self) -> String {
        let data = self.payload.get(8..).unwrap_or_default();
        String::from_utf8_lossy(data).into_owned()
    }

    /// The `:status` of a decoded response HEADERS frame.
    pub fn status(&self) -> Option<u16> {
        let (_, value) = self.fields.iter().find(|(name, _)| name == ":status")?;
        value.parse().ok()
    }
}

/// Many frames in one buffer, to be written at once.
pub fn wire(frames: impl IntoIterator<Item = Frame>) -> Vec<u8> {
    let mut out = Vec::new();
    for frame in frames {
        frame.write_to(&mut out);
    }
    out
}

/// What reading the next frame gave.
#[derive(Debug)]
pub enum Next {
    Frame(Frame),
    /// The server closed (or reset) the connection.
    Closed,
    TimedOut,
}

/// What a write with a deadline did.
#[derive(Debug, PartialEq)]
pub enum Sent {
    Written,
    /// The connection failed: the server closed or reset it.
    Failed,
    /// The server took nothing more before the deadline (the write is abandoned).
    Waiting,
}

/// How a connection ended, read frame by frame.
#[derive(Debug, PartialEq)]
pub enum Ending {
    /// A GOAWAY with this error code and debug data.
    GoAway(u32, String),
    /// Closed without a GOAWAY.
    Closed,
    /// Still open when the time ran out.
    Open,
}

/// Any byte stream an HTTP/2 connection can run on.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A client connection, past the preface and the exchange of SETTINGS.
pub struct H2 {
    raw: Raw<Box<dyn Io>>,
    decoder: hpack::Decoder,
}

impl H2 {
    /// Sends the preface and `settings`, acknowledges the server's SETTINGS and waits for the
    /// acknowledgement of its own, so that each side's settings apply from here on.
    pub async fn handshake(io: Box<dyn Io>, settings: &[(u16, u32)]) -> Self {
        let mut h2 = Self {
            raw: Raw::from(io),
            decoder: hpack::Decoder::default(),
        };
        let mut start = PREFACE.to_vec();
        Frame::settings(settings).write_to(&mut start);
        h2.send_bytes(&start).await.expect("send the preface");
        let deadline = Instant::now() + Duration::from_secs(10);
        let (mut theirs, mut ours) = (false, false);
        while !(theirs && ours) {
            let Next::Frame(frame) = h2.next(deadline).await else {
                panic!("the server ended the handshake");
            };
            if frame.kind != kind::SETTINGS {
                continue;
            }
            if frame.has(flag::ACK) {
                ours = true;
            } else {
                theirs = true;
                h2.send(&[Frame::settings_ack()]).await;
            }
        }
        h2
    }

    /// Writes `frames` in one write; false when the connection failed.
    pub async fn send(&mut self, frames: &[Frame]) -> bool {
        self.send_bytes(&wire(frames.iter().cloned())).await.is_ok()
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.raw.stream.write_all(bytes).await?;
        self.raw.stream.flush().await
    }

    /// Writes `bytes` unless the server stops taking them until `deadline`.
    pub async fn send_until(&mut self, bytes: &[u8], deadline: Instant) -> Sent {
        match timeout_at(deadline, self.send_bytes(bytes)).await {
            Ok(Ok(())) => Sent::Written,
            Ok(Err(_)) => Sent::Failed,
            Err(_) => Sent::Waiting,
        }
    }

    /// The next frame (a HEADERS block decoded), unless the connection ends or `deadline`
    /// passes first.
    pub async fn next(&mut self, deadline: Instant) -> Next {
        match self.fill_to(9, deadline).await {
            Some(true) => {}
            Some(false) => return Next::Closed,
            None => return Next::TimedOut,
        }
        let head = &self.raw.buf[..9];
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        match self.fill_to(9 + len, deadline).await {
            Some(true) => {}
            Some(false) => return Next::Closed,
            None => return Next::TimedOut,
        }
        let payload: Vec<u8> = self.raw.buf.drain(..9 + len).skip(9).collect();
        let mut frame = Frame::new(kind, flags, stream, payload);
        if kind == kind::HEADERS {
            assert!(
                frame.has(flag::END_HEADERS),
                "a response head in CONTINUATION frames"
            );
            frame.fields = self.decoder.decode(&frame.payload).expect("HPACK");
        }
        Next::Frame(frame)
    }

    /// Reads until the buffer holds `n` bytes: `Some(false)` when the connection ended
    /// first, `None` when the deadline passed.
    async fn fill_to(&mut self, n: usize, deadline: Instant) -> Option<bool> {
        while self.raw.buf.len() < n {
            if self.raw.read_until(deadline).await? == 0 {
                return Some(false);
            }
        }
        Some(true)
    }

    /// Reads frames until a GOAWAY, the end of the connection or `limit`; every frame read
    /// before the GOAWAY is passed to `seen`.
    pub async fn ending(&mut self, limit: Duration, mut seen: impl FnMut(&Frame)) -> Ending {
        let deadline = Instant::now() + limit;
        loop {
            match self.next(deadline).await {
                Next::Frame(frame) if frame.kind == kind::GOAWAY => {
                    let code = frame.error_code().expect("GOAWAY code");
                    return Ending::GoAway(code, frame.debug_data());
                }
                Next::Frame(frame) => seen(&frame),
                Next::Closed => return Ending::Closed,
                Next::TimedOut => return Ending::Open,
            }
        }
    }
}
