//! HTTP/2 abuse over raw frames, against the real binary on cleartext (prior knowledge) and
//! on TLS (ALPN `h2`): rapid reset, provoked resets, CONTINUATION, SETTINGS and PING floods,
//! an HPACK bomb, too many streams, slow readers (a zero window, a huge window never read),
//! window overflows and an oversized frame. For each: wxgate's memory stays bounded (its
//! peak after the attack minus its resident size before, printed for `--nocapture`), a
//! normal client on another connection is answered within a second, and the abusive
//! connection ends the way h2 0.4 ends it (the GOAWAY codes asserted are the ones it sends).

// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::binary::{Binary, ConfigFile, Listening, Memory};
use support::certs::Ca;
use support::h2::{code, flag, kind, setting, wire, Ending, Frame, Io, Next, Sent, H2};
use support::{hpack, ConfigBuilder, Upstream};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// How much wxgate's memory may grow during one attack (its peak after, minus its resident
/// size before): generous for a loaded machine, far below what an unbounded buffer reaches.
const MEMORY_BOUND_KIB: u64 = 32 * 1024;

/// How long a normal request on another connection may take while an attack goes on.
const PROBE_LIMIT: Duration = Duration::from_secs(1);

/// `server.request_timeout` here, which also bounds how long a write may wait on a client
/// that reads nothing.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Every attack ends within this, whatever wxgate does.
const TEST_LIMIT: Duration = Duration::from_secs(30);

/// wxgate's `max_concurrent_streams`.
const MAX_STREAMS: u32 = 128;

#[derive(Clone, Copy, Debug)]
enum Transport {
    Cleartext,
    Tls,
}

/// A `wxgate run` in front of a recording upstream, with both listeners.
struct Target {
    binary: Binary,
    at: Listening,
    transport: Transport,
    ca: Ca,
    upstream: Upstream,
    _config: ConfigFile,
}

impl Target {
    /// `server_extra` goes into `[server]`.
    async fn start(transport: Transport, server_extra: &str) -> Self {
        let upstream = Upstream::start().await;
        // WeChat is never called: nothing here logs in.
        let mut config = ConfigBuilder::new("http://127.0.0.1:9", &upstream.base());
        config.server_extra = format!(
            "request_timeout = \"{}s\"\ntls_listen = \"127.0.0.1:0\"\n\
             tls_cert_file = \"tls.crt\"\ntls_key_file = \"tls.key\"\n{server_extra}\n",
            WRITE_TIMEOUT.as_secs()
        );
        let file = ConfigFile::new(&config.text());
        let ca = Ca::new();
        let (cert, key, _) = ca.leaf("wxgate");
        let dir = file.parent().expect("config folder");
        std::fs::write(dir.join("tls.crt"), cert).expect("cert");
        std::fs::write(dir.join("tls.key"), key).expect("key");
        let mut binary = Binary::run(&file, &[]);
        let at = binary.listening();
        let target = Self {
            binary,
            at,
            transport,
            ca,
            upstream,
            _config: file,
        };
        // Whatever the first request sets up lazily belongs to the baseline.
        target.probe().await;
        target
    }

    fn addr(&self) -> SocketAddr {
        match self.transport {
            Transport::Cleartext => self.at.public,
            Transport::Tls => self.at.https.expect("the https listener"),
        }
    }

    /// A connection to the listener under attack. `small_window` shrinks the client's
    /// receive buffer, so that a client that stops reading stalls wxgate's writes quickly.
    async fn io(&self, small_window: bool) -> Box<dyn Io> {
        let socket = TcpSocket::new_v4().expect("socket");
        if small_window {
            socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        }
        let tcp: TcpStream = socket.connect(self.addr()).await.expect("connect");
        match self.transport {
            Transport::Cleartext => Box::new(tcp),
            Transport::Tls => {
                let tls = self.ca.connect(tcp, &[b"h2"]).await;
                assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
                Box::new(tls)
            }
        }
    }

    /// An HTTP/2 connection past the exchange of SETTINGS (`settings` are the client's).
    async fn connect(&self, settings: &[(u16, u32)]) -> H2 {
        H2::handshake(self.io(false).await, settings).await
    }

    /// A normal client on a connection of its own: `GET /public/probe` over HTTP/2 must be
    /// answered 200 within [`PROBE_LIMIT`].
    async fn probe(&self) {
        let builder = reqwest::Client::builder();
        let (client, url) = match self.transport {
            Transport::Cleartext => (
                builder.http2_prior_knowledge(),
                format!("http://{}/public/probe", self.at.public),
            ),
            Transport::Tls => {
                let ca = reqwest::Certificate::from_der(&self.ca.der()).expect("ca");
                let port = self.addr().port();
                (
                    builder.tls_certs_only([ca]),
                    format!("https://localhost:{port}/public/probe"),
                )
            }
        };
        let client = client.build().expect("client");
        let started = Instant::now();
        let answer = tokio::time::timeout(PROBE_LIMIT, client.get(url).send()).await;
        let response = answer
            .unwrap_or_else(|_| panic!("another client waited over {PROBE_LIMIT:?}"))
            .expect("the probe request");
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        eprintln!("probe answered in {:?}", started.elapsed());
    }

    fn memory(&self) -> Memory {
        self.binary.memory()
    }

    /// Prints how much wxgate grew during `attack` and asserts it stayed within the bound.
    fn assert_bounded(&self, attack: &str, before: Memory) {
        let after = self.memory();
        let peak = after.peak_kib.saturating_sub(before.rss_kib);
        eprintln!(
            "{attack} over {:?}: VmRSS {} -> {} KiB, VmHWM {} KiB: peak growth {peak} KiB",
            self.transport, before.rss_kib, after.rss_kib, after.peak_kib
        );
        assert!(
            peak < MEMORY_BOUND_KIB,
            "{attack}: wxgate grew by {peak} KiB (bound {MEMORY_BOUND_KIB} KiB)"
        );
    }

    /// How many requests for `path` the upstream received.
    fn forwarded(&self, path: &str) -> usize {
        let requests = self.upstream.requests();
        requests.iter().filter(|r| r.target == path).count()
    }
}

/// Runs `attack` on `transport`, within [`TEST_LIMIT`].
async fn run<F, Fut>(transport: Transport, attack: F)
where
    F: FnOnce(Transport) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    if tokio::time::timeout(TEST_LIMIT, attack(transport))
        .await
        .is_err()
    {
        panic!("the attack did not end within {TEST_LIMIT:?}");
    }
}

/// Writes `batches` without reading, and probes another connection after the first: what
/// the last write did (`Written` when every batch went out) and how many were written.
/// A write may wait up to `patience` for wxgate to take it.
async fn flood(
    t: &Target,
    h2: &mut H2,
    batches: impl IntoIterator<Item = Vec<u8>>,
    patience: Duration,
) -> (Sent, usize) {
    let mut written = 0;
    for batch in batches {
        match h2.send_until(&batch, Instant::now() + patience).await {
            Sent::Written => written += 1,
            other => return (other, written),
        }
        if written == 1 {
            t.probe().await;
        }
    }
    (Sent::Written, written)
}

/// A GOAWAY with `code`; `debug` is how h2 names the limit in its debug data.
fn goaway(code: u32, debug: &str) -> Ending {
    Ending::GoAway(code, debug.into())
}

/// The request streams `1, 3, 5…`, `n` of them.
fn stream_ids(n: u32) -> impl Iterator<Item = u32> {
    (0..n).map(|i| 1 + 2 * i)
}

// 1. Rapid reset (CVE-2023-44487): open a stream, cancel it, thousands of times.
async fn rapid_reset(transport: Transport) {
    let t = Target::start(transport, "").await;
    let before = t.memory();
    let mut h2 = t.connect(&[]).await;
    let mut ids = stream_ids(10_000);
    let batches = std::iter::from_fn(|| {
        let batch: Vec<u32> = ids.by_ref().take(500).collect();
        let pairs = batch.into_iter().flat_map(|id| {
            [
                Frame::get(id, "/public/rapid"),
                Frame::rst(id, code::CANCEL),
            ]
        });
        Some(wire(pairs)).filter(|bytes| !bytes.is_empty())
    });
    let (_, written) = flood(&t, &mut h2, batches, Duration::from_secs(10)).await;
    let ending = h2.ending(Duration::from_secs(10), |_| {}).await;
    let forwarded = t.forwarded("/public/rapid");
    eprintln!("rapid reset: {written} batches of 500 written, {forwarded} forwarded");
    assert_eq!(ending, goaway(code::ENHANCE_YOUR_CALM, "too_many_resets"));
    assert!(written < 20, "all 10,000 streams were taken");
    t.probe().await;
    t.assert_bounded("rapid reset", before);
}

// 2. Provoked resets (CVE-2025-8671 class): streams the server itself must reset, here for a
// connection-specific header, which HTTP/2 forbids. 1,000 leave the connection working; a
// hundred more pass `max_local_error_reset_streams` (1,024).
async fn provoked_resets(transport: Transport) {
    let t = Target::start(transport, "").await;
    let before = t.memory();
    let mut h2 = t.connect(&[]).await;
    let block = hpack::request("GET", "/public/provoked", &[("connection", "close")]);
    let provoke = |ids: std::ops::Range<u32>| {
        let frames = ids.map(|i| Frame::headers(1 + 2 * i, flag::END_HEADERS, block.clone()));
        let frames: Vec<Frame> = frames.collect();
        let batches = frames.chunks(100).map(|c| wire(c.iter().cloned()));
        batches.collect::<Vec<_>>()
    };
    flood(&t, &mut h2, provoke(0..1000), Duration::from_secs(10)).await;
    let resets = std::cell::Cell::new(0);
    let count = |f: &Frame| {
        if f.kind == kind::RST_STREAM {
            assert_eq!(f.error_code(), Some(code::PROTOCOL_ERROR), "{f:?}");
            resets.set(resets.get() + 1);
        }
    };
    // A normal request after them is still answered on this connection.
    h2.send(&[Frame::get(2001, "/public/after")]).await;
    let (frames, _) = answer(&mut h2, 2001, count).await;
    assert_eq!(frames.first().and_then(Frame::status), Some(200));
    flood(&t, &mut h2, provoke(1001..1101), Duration::from_secs(10)).await;
    let ending = h2.ending(Duration::from_secs(10), count).await;
    eprintln!(
        "provoked resets: {} streams reset before the GOAWAY",
        resets.get()
    );
    let calm = goaway(code::ENHANCE_YOUR_CALM, "too_many_internal_resets");
    assert_eq!(ending, calm);
    assert_eq!(t.forwarded("/public/provoked"), 0);
    t.probe().await;
    t.assert_bounded("provoked resets", before);
}

// 3. CONTINUATION flood (CVE-2024-27316 class): a header block that never ends.
async fn continuation_flood(transport: Transport) {
    let t = Target::start(transport, "").await;
    let before = t.memory();
    let mut h2 = t.connect(&[]).await;
    let head = Frame::headers(1, 0, hpack::request("GET", "/public/continued", &[]));
    let mut field = Vec::new();
    hpack::literal(&mut field, "x-flood", &[b'a'; 16_000]);
    let more =
        (0..100).map(|_| wire((0..16).map(|_| Frame::continuation(1, false, field.clone()))));
    let batches = std::iter::once(wire([head])).chain(more);
    let (_, written) = flood(&t, &mut h2, batches, Duration::from_secs(10)).await;
    let mut answered = false;
    let ending = h2
        .ending(Duration::from_secs(10), |f| answered |= f.stream == 1)
        .await;
    eprintln!("CONTINUATION flood: {written} batches of 16 frames of 16 KB written");
    // h2 counts the frames: more than the header list limit needs is ENHANCE_YOUR_CALM.
    let calm = goaway(code::ENHANCE_YOUR_CALM, "too_many_continuations");
    assert_eq!(ending, calm);
    assert!(!answered, "the endless block was answered");
    assert_eq!(t.forwarded("/public/continued"), 0);
    t.probe().await;
    t.assert_bounded("CONTINUATION flood", before);
}

// 4. SETTINGS and PING floods, never reading the acknowledgements. h2 writes each ACK before
// it reads the next frame, so wxgate stops reading once its writes back up; no GOAWAY is
// due, and the connection is closed when a write has waited `request_timeout`.
async fn ack_flood(t: Target, attack: &str, frame: Frame) {
    let before = t.memory();
    let started = Instant::now();
    let mut h2 = H2::handshake(t.io(true).await, &[]).await;
    let batches = std::iter::repeat_with(|| wire(std::iter::repeat_n(frame.clone(), 1000)));
    let (sent, written) = flood(&t, &mut h2, batches, Duration::from_secs(15)).await;
    eprintln!(
        "{attack}: {written} batches of 1000 frames written, then {sent:?} after {:?}",
        started.elapsed()
    );
    assert_eq!(sent, Sent::Failed, "the connection was never closed");
    t.probe().await;
    t.assert_bounded(attack, before);
}

async fn settings_flood(transport: Transport) {
    let t = Target::start(transport, "").await;
    let settings = Frame::settings(&[(setting::INITIAL_WINDOW_SIZE, 65_535)]);
    ack_flood(t, "SETTINGS flood", settings).await
}

async fn ping_flood(transport: Transport) {
    let t = Target::start(transport, "").await;
    ack_flood(t, "PING flood", Frame::ping(0x0102_0304_0506_0708)).await
}

/// The next frame on `stream` that ends it (END_STREAM or RST_STREAM), or a GOAWAY, with
/// the stream's frames before it; other streams' frames go to `other`. Panics when nothing
/// comes within 5 s.
async fn answer(h2: &mut H2, stream: u32, mut other: impl FnMut(&Frame)) -> (Vec<Frame>, Frame) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut before = Vec::new();
    loop {
        let Next::Frame(frame) = h2.next(deadline).await else {
            panic!("no answer on stream {stream}");
        };
        let ends = frame.has(flag::END_STREAM) || frame.kind == kind::RST_STREAM;
        if frame.kind == kind::GOAWAY || (frame.stream == stream && ends) {
            return (before, frame);
        }
        if frame.stream == stream {
            before.push(frame);
        } else {
            other(&frame);
        }
    }
}

// 5. HPACK bomb: a 4,000-byte value enters the dynamic table once, and each further copy
// costs the client one byte.
async fn hpack_bomb(transport: Transport) {
    let t = Target::start(transport, "").await;
    let before = t.memory();
    let mut h2 = t.connect(&[]).await;
    // `copies` references to the table's newest entry; the first block also puts it there.
    let bomb = |id: u32, path: &str, copies: usize| {
        let mut block = hpack::request("GET", path, &[]);
        if id == 1 {
            hpack::indexed_literal(&mut block, "x-bomb", &[b'b'; 4000]);
        }
        (0..copies).for_each(|_| hpack::indexed(&mut block, 62));
        [Frame::headers(
            id,
            flag::END_HEADERS | flag::END_STREAM,
            block,
        )]
    };
    // 1 + 16 copies (68 KB decoded): past `max_header_bytes`, wxgate's own JSON 431.
    h2.send(&bomb(1, "/public/bomb-small", 16)).await;
    let (frames, last) = answer(&mut h2, 1, |_| {}).await;
    assert_eq!(frames.first().and_then(Frame::status), Some(431));
    let json: serde_json::Value = serde_json::from_slice(&last.payload).expect("JSON");
    assert_eq!(json["error"], "headers_too_large");
    // 30 copies (120 KB): past hyper's header list limit, h2's own 431, without a body.
    h2.send(&bomb(3, "/public/bomb-medium", 30)).await;
    let (_, last) = answer(&mut h2, 3, |_| {}).await;
    assert_eq!(last.status(), Some(431), "{last:?}");
    t.probe().await;
    // 16,000 copies in one frame (64 MB): past four times the limit, h2 stops decoding.
    h2.send(&bomb(5, "/public/bomb-huge", 16_000)).await;
    let (_, last) = answer(&mut h2, 5, |_| {}).await;
    assert_eq!(last.kind, kind::GOAWAY);
    assert_eq!(last.error_code(), Some(code::ENHANCE_YOUR_CALM));
    assert_eq!(last.debug_data(), "header_list_way_too_large");
    for path in [
        "/public/bomb-small",
        "/public/bomb-medium",
        "/public/bomb-huge",
    ] {
        assert_eq!(t.forwarded(path), 0, "{path} was forwarded");
    }
    t.probe().await;
    t.assert_bounded("HPACK bomb", before);
}

// 6. More streams at once than `max_concurrent_streams`, each held 3 s by the upstream.
async fn too_many_streams(transport: Transport) {
    let t = Target::start(transport, "").await;
    let before = t.memory();
    let mut h2 = t.connect(&[]).await;
    let total = MAX_STREAMS + 50;
    let requests: Vec<Frame> = stream_ids(total)
        .map(|id| Frame::get(id, "/public/slow"))
        .collect();
    h2.send(&requests).await;
    t.upstream.wait_for(MAX_STREAMS as usize + 1).await;
    t.probe().await;
    let (mut refused, mut served) = (Vec::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(15);
    while refused.len() + served < total as usize {
        let Next::Frame(f) = h2.next(deadline).await else {
            panic!("{served} served and {} refused only", refused.len());
        };
        match f.kind {
            kind::RST_STREAM => {
                assert_eq!(f.error_code(), Some(code::REFUSED_STREAM), "{f:?}");
                refused.push(f.stream);
            }
            kind::HEADERS => {
                assert_eq!(f.status(), Some(200), "{f:?}");
                served += 1;
            }
            kind::GOAWAY => panic!("{f:?}"),
            _ => {}
        }
    }
    // Exactly the streams past the limit, in the order they came.
    let excess: Vec<u32> = stream_ids(total).skip(MAX_STREAMS as usize).collect();
    assert_eq!(refused, excess);
    assert_eq!(served, MAX_STREAMS as usize);
    t.probe().await;
    t.assert_bounded("too many streams", before);
}

// 7. A zero flow-control window held open: every stream asks for 1 MiB and the client lets
// none of it through, except on stream 1, where it grants 4 KiB every 200 ms (so the
// connection as a whole keeps moving). No write waits, so only the responses' waits on the
// window end it: the connection is closed (with no GOAWAY but the idle one) once one of them
// has waited `request_timeout`, even while stream 1 trickles.
async fn zero_window(transport: Transport) {
    // The idle wind-down (a GOAWAY, streams in flight left to finish) begins first, as with
    // the defaults (10 s before 60 s): it must not shelter the stalled streams.
    let t = Target::start(transport, "header_read_timeout = \"700ms\"").await;
    let before = t.memory();
    let mut h2 = t.connect(&[(setting::INITIAL_WINDOW_SIZE, 0)]).await;
    let requests: Vec<Frame> = stream_ids(MAX_STREAMS)
        .map(|id| Frame::get(id, "/public/big"))
        .collect();
    h2.send(&requests).await;
    let mut trickled = 0;
    let mut data = |f: &Frame| {
        if f.kind == kind::DATA && !f.payload.is_empty() {
            assert_eq!(f.stream, 1, "data past a zero window");
            trickled += f.payload.len();
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut heads, mut wound_down) = (0, false);
    while heads < MAX_STREAMS {
        let Next::Frame(f) = h2.next(deadline).await else {
            panic!("{heads} response heads only");
        };
        assert!(f.kind != kind::HEADERS || f.status() == Some(200), "{f:?}");
        heads += u32::from(f.kind == kind::HEADERS);
        wound_down |= f.kind == kind::GOAWAY && f.error_code() == Some(code::NO_ERROR);
        data(&f);
    }
    let held = Instant::now();
    t.probe().await;
    let limit = WRITE_TIMEOUT * 2 + Duration::from_secs(5);
    let grant = [Frame::window_update(0, 4096), Frame::window_update(1, 4096)];
    let ending = loop {
        if !h2.send(&grant).await {
            break Ending::Closed;
        }
        match h2.ending(Duration::from_millis(200), &mut data).await {
            Ending::Open if held.elapsed() < limit => {}
            Ending::GoAway(code::NO_ERROR, _) => wound_down = true,
            other => break other,
        }
    };
    let waited = held.elapsed();
    eprintln!(
        "zero window: {MAX_STREAMS} responses held, {trickled} bytes trickled, \
         closed after {waited:?}"
    );
    assert!(
        wound_down,
        "the idle wind-down (GOAWAY NO_ERROR) came first"
    );
    assert_eq!(ending, Ending::Closed);
    assert!(waited < WRITE_TIMEOUT * 2, "closed after {waited:?}");
    assert!(trickled > 0, "stream 1 never moved");
    t.probe().await;
    t.assert_bounded("zero window", before);
}

// 8. A huge window and a client that never reads: h2 queues each stream's response up to
// `max_send_buf_size`, until the write timeout closes the connection.
async fn unread_window(transport: Transport) {
    let t = Target::start(transport, "").await;
    let before = t.memory();
    let window = 0x7fff_ffff;
    let mut h2 = H2::handshake(t.io(true).await, &[(setting::INITIAL_WINDOW_SIZE, window)]).await;
    let mut frames = vec![Frame::window_update(0, window - 65_535)];
    frames.extend(stream_ids(MAX_STREAMS).map(|id| Frame::get(id, "/public/big")));
    h2.send(&frames).await;
    t.upstream.wait_for(MAX_STREAMS as usize + 1).await;
    let held = Instant::now();
    t.probe().await;
    // Never reading: pings go out until a write fails, which it does once wxgate has closed.
    let pings = std::iter::repeat_with(|| wire([Frame::ping(1)]));
    let (sent, _) = flood(&t, &mut h2, pings, Duration::from_secs(10)).await;
    eprintln!("unread window: closed after {:?}", held.elapsed());
    assert_eq!(sent, Sent::Failed);
    t.probe().await;
    t.assert_bounded("unread window", before);
}

// 9. WINDOW_UPDATE increments that take a window past 2^31-1: a stream error on a stream, a
// connection error on the connection (RFC 9113 6.9.1), FLOW_CONTROL_ERROR both.
async fn window_overflow(transport: Transport) {
    let t = Target::start(transport, "").await;
    let before = t.memory();
    let mut h2 = t.connect(&[]).await;
    let overflow = Frame::window_update(1, 0x7fff_ffff);
    h2.send(&[Frame::get(1, "/public/slow"), overflow]).await;
    let (_, last) = answer(&mut h2, 1, |_| {}).await;
    assert_eq!(last.kind, kind::RST_STREAM, "{last:?}");
    assert_eq!(last.error_code(), Some(code::FLOW_CONTROL_ERROR));
    t.probe().await;
    h2.send(&[Frame::window_update(0, 0x7fff_ffff)]).await;
    let ending = h2.ending(Duration::from_secs(5), |_| {}).await;
    assert_eq!(ending, goaway(code::FLOW_CONTROL_ERROR, ""));
    t.probe().await;
    t.assert_bounded("window overflow", before);
}

// 10. A frame announcing 16 MiB - 1 bytes, past the 16 KiB `SETTINGS_MAX_FRAME_SIZE`: refused
// from its header, before any of it is buffered (RFC 9113 4.2).
async fn oversized_frame(transport: Transport) {
    let t = Target::start(transport, "").await;
    let before = t.memory();
    let mut h2 = t.connect(&[]).await;
    let mut frame = wire([Frame::new(kind::DATA, 0, 1, Vec::new())]);
    frame[..3].copy_from_slice(&[0xff, 0xff, 0xff]);
    frame.extend_from_slice(&[0; 1024]);
    h2.send_bytes(&frame).await.expect("send");
    let ending = h2.ending(Duration::from_secs(5), |_| {}).await;
    assert_eq!(ending, goaway(code::FRAME_SIZE_ERROR, ""));
    t.probe().await;
    t.assert_bounded("oversized frame", before);
}

/// Decodes the RFC 7541 C.4.1 example, so a wrong Huffman table cannot pass for a status.
#[test]
fn the_hpack_decoder_reads_the_rfc_examples() {
    let huffman = [
        0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
    ];
    let decoded = hpack::huffman_decode(&huffman).expect("valid");
    assert_eq!(decoded, b"www.example.com");
    // C.4.1 whole: indexed :method GET, :scheme http, :path /, then :authority in Huffman.
    let mut block = vec![0x82, 0x86, 0x84, 0x41, 0x8c];
    block.extend_from_slice(&huffman);
    let fields = hpack::Decoder::default().decode(&block).expect("valid");
    let authority = (":authority".to_string(), "www.example.com".to_string());
    assert_eq!(fields.last(), Some(&authority));
    assert_eq!(fields.len(), 4);
}

/// One test per attack and transport: `cleartext::rapid_reset`, `tls::rapid_reset`…
macro_rules! on_both_transports {
    ($($attack:ident),* $(,)?) => {
        mod cleartext {
            $(
                #[tokio::test]
                async fn $attack() {
                    super::run(super::Transport::Cleartext, super::$attack).await
                }
            )*
        }
        mod tls {
            $(
                #[tokio::test]
                async fn $attack() {
                    super::run(super::Transport::Tls, super::$attack).await
                }
            )*
        }
    };
}

on_both_transports!(
    rapid_reset,
    provoked_resets,
    continuation_flood,
    settings_flood,
    ping_flood,
    hpack_bomb,
    too_many_streams,
    zero_window,
    unread_window,
    window_overflow,
    oversized_frame,
);
