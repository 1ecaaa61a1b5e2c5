use super::*;

/// Decodes `wire` fed in two pieces, split at `at`: the body's bytes, and what the
/// decoder left in the buffer (everything past the body's framing).
fn decode_split(mut decoder: Decoder, wire: &[u8], at: usize) -> io::Result<(Vec<u8>, Vec<u8>)> {
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
