//! Canonical request paths: one reading for the gateway and the upstream, or a refusal.
use std::borrow::Cow;

/// Why a path was refused; only logged at debug level, never shown to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRejection {
    /// Not `/...` (`*`, empty): nothing to route on.
    NotOriginForm,
    /// `.`/`..` after decoding: walks out of the routed prefix (`/public/%2e%2e/admin`).
    DotSegment,
    /// `//` mid-path: nginx `merge_slashes` and Spring collapse it, the router does not.
    EmptySegment,
    /// Tomcat/Spring strip `;params`, so `/public/..;/admin` is `/admin` upstream.
    Semicolon,
    /// IIS and some Java containers read `\` as `/`.
    Backslash,
    /// NUL/CR/LF and friends truncate paths in C code or split log lines and headers.
    ControlByte,
    /// Raw bytes >= 0x80: each server guesses a different charset; clients must encode.
    NonAscii,
    /// Space, `"`, `<`, `|`, `?`, ... : outside RFC 3986 `pchar`, parsers disagree on them.
    InvalidChar,
    /// `%2F`/`%5C`: the router sees one segment, a decoding upstream sees two.
    EncodedSeparator,
    /// `%25` + two hex digits: an upstream that decodes twice sees another character.
    DoubleEncoding,
    /// `%` not followed by two hex digits: each decoder repairs it differently.
    BadPercentEncoding,
    /// Overlong forms (`%C0%AE` = `.`), surrogates, truncated sequences.
    InvalidUtf8,
    /// `#` never reaches a server legitimately; upstreams would cut the path there.
    Fragment,
}

impl PathRejection {
    /// Short snake_case reason for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotOriginForm => "not_origin_form",
            Self::DotSegment => "dot_segment",
            Self::EmptySegment => "empty_segment",
            Self::Semicolon => "semicolon",
            Self::Backslash => "backslash",
            Self::ControlByte => "control_byte",
            Self::NonAscii => "non_ascii",
            Self::InvalidChar => "invalid_char",
            Self::EncodedSeparator => "encoded_separator",
            Self::DoubleEncoding => "double_encoding",
            Self::BadPercentEncoding => "bad_percent_encoding",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::Fragment => "fragment",
        }
    }
}

impl std::fmt::Display for PathRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Returns the canonical path, borrowing when it is already canonical (the common case: no allocation).
///
/// Escapes of unreserved characters are decoded (`%2e` -> `.`, so `%2e%2e` cannot hide a
/// `..` from the segment check); every other escape is kept with upper-case hex. `%23` (`#`)
/// and `%3F` (`?`) are kept: encoded they are plain data, not delimiters.
pub fn canonicalize(path: &str) -> Result<Cow<'_, str>, PathRejection> {
    use PathRejection::*;
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(NotOriginForm);
    }
    let mut out: Option<String> = None; // allocated only at the first rewritten escape
    let mut copied = 0; // `path[..copied]` is already in `out`
    let mut utf8 = Utf8::default();
    let (mut seg_len, mut seg_dots) = (0usize, 0usize);
    let mut i = 1;
    while i < bytes.len() {
        let b = bytes[i];
        let c = if b == b'%' {
            let c = decode_escape(bytes, i).ok_or(BadPercentEncoding)?;
            match c {
                b'/' | b'\\' => return Err(EncodedSeparator),
                b';' => return Err(Semicolon),
                0..=0x1F | 0x7F => return Err(ControlByte),
                b'%' if two_hex_follow(bytes, i + 3) => return Err(DoubleEncoding),
                _ => {}
            }
            let hex = &path[i + 1..i + 3];
            let unreserved = is_unreserved(c);
            if unreserved || hex.bytes().any(|h| h.is_ascii_lowercase()) {
                let s = out.get_or_insert_with(|| String::with_capacity(path.len()));
                s.push_str(&path[copied..i]);
                if unreserved {
                    s.push(char::from(c));
                } else {
                    s.push('%');
                    s.extend(hex.chars().map(|h| h.to_ascii_uppercase()));
                }
                copied = i + 3;
            }
            i += 3;
            c
        } else {
            match b {
                b'/' => {
                    check_segment(seg_len, seg_dots, false)?;
                    (seg_len, seg_dots) = (0, 0);
                }
                _ if is_unreserved(b) || is_sub_delim_or_colon_at(b) => {}
                b';' => return Err(Semicolon),
                b'\\' => return Err(Backslash),
                b'#' => return Err(Fragment),
                0..=0x1F | 0x7F => return Err(ControlByte),
                0x80.. => return Err(NonAscii),
                _ => return Err(InvalidChar),
            }
            i += 1;
            b
        };
        utf8.push(c)?;
        if b != b'/' {
            seg_len += 1;
            seg_dots += usize::from(c == b'.');
        }
    }
    utf8.finish()?;
    check_segment(seg_len, seg_dots, true)?;
    Ok(match out {
        Some(mut s) => {
            s.push_str(&path[copied..]);
            Cow::Owned(s)
        }
        None => Cow::Borrowed(path),
    })
}

/// `len`/`dots` count decoded characters, so `%2e.` is as much a `..` as `..` itself.
fn check_segment(len: usize, dots: usize, last: bool) -> Result<(), PathRejection> {
    if len == 0 && !last {
        Err(PathRejection::EmptySegment)
    } else if len == dots && (1..=2).contains(&len) {
        Err(PathRejection::DotSegment)
    } else {
        Ok(())
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 sub-delims plus `:` and `@`, minus `;` (see [`PathRejection::Semicolon`]).
fn is_sub_delim_or_colon_at(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@'
    )
}

/// The byte encoded by `%XX` at `bytes[i]`, or `None` if the escape is malformed.
fn decode_escape(bytes: &[u8], i: usize) -> Option<u8> {
    let hex = |b: &u8| char::from(*b).to_digit(16);
    Some((hex(bytes.get(i + 1)?)? << 4 | hex(bytes.get(i + 2)?)?) as u8)
}

/// Whether the next two characters at `bytes[j..]` are hex digits once decoded: `%25%32%65`
/// is as much a double-encoded `.` as `%252e` (we would normalise it to exactly that).
fn two_hex_follow(bytes: &[u8], j: usize) -> bool {
    let char_at = |j: usize| match bytes.get(j)? {
        b'%' => decode_escape(bytes, j).map(|c| (c, 3)),
        &b => Some((b, 1)),
    };
    let Some((a, n)) = char_at(j) else {
        return false;
    };
    char_at(j + n).is_some_and(|(b, _)| a.is_ascii_hexdigit() && b.is_ascii_hexdigit())
}

/// Validates the decoded bytes one sequence at a time, so no decoded copy is needed.
#[derive(Default)]
struct Utf8 {
    buf: [u8; 4],
    len: usize,
    need: usize,
}

impl Utf8 {
    fn push(&mut self, c: u8) -> Result<(), PathRejection> {
        if self.need == 0 {
            self.need = match c {
                0..=0x7F => return Ok(()),
                0xC2..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF4 => 4,
                _ => return Err(PathRejection::InvalidUtf8), // stray continuation, C0/C1, F5+
            };
        }
        self.buf[self.len] = c;
        self.len += 1;
        if self.len == self.need {
            // std rejects overlong forms (`E0 80 AE`), surrogates (`ED A0 80`) and > U+10FFFF.
            std::str::from_utf8(&self.buf[..self.len]).map_err(|_| PathRejection::InvalidUtf8)?;
            (self.len, self.need) = (0, 0);
        }
        Ok(())
    }

    /// A sequence cut off by the end of the path is as invalid as a broken one.
    fn finish(&self) -> Result<(), PathRejection> {
        (self.need == 0)
            .then_some(())
            .ok_or(PathRejection::InvalidUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::PathRejection::*;
    use super::*;

    fn accepts(cases: &[(&str, &str)]) {
        for &(input, want) in cases {
            assert_eq!(canonicalize(input).as_deref(), Ok(want), "input {input:?}");
        }
    }

    fn refuses(want: PathRejection, inputs: &[&str]) {
        for &input in inputs {
            assert_eq!(canonicalize(input), Err(want), "input {input:?}");
        }
    }

    #[test]
    fn keeps_plain_paths_borrowed() {
        let plain = [
            "/",
            "/api",
            "/api/",
            "/api/v1/users/42",
            "/...",
            "/.well-known/jwks.json",
            "/a%E4%B8%AD",
            "/a%25",
            "/a%25zz",
            "/a%23b",
            "/a:b@c!$&'()*+,=",
        ];
        for input in plain {
            let got = canonicalize(input);
            assert!(
                matches!(got, Ok(Cow::Borrowed(p)) if p == input),
                "{input:?}"
            );
        }
    }

    #[test]
    fn decodes_unreserved_escapes_so_routing_sees_one_form() {
        accepts(&[("/ap%69", "/api"), ("/a%7e", "/a~"), ("/a%2e", "/a.")]);
        accepts(&[("/%41%2D%5f", "/A-_"), ("/v%31/x%2e%2e%2e", "/v1/x...")]);
        assert!(matches!(canonicalize("/ap%69"), Ok(Cow::Owned(_))));
    }

    #[test]
    fn upper_cases_escapes_that_stay_encoded() {
        accepts(&[("/a%e4%b8%ad", "/a%E4%B8%AD"), ("/x%3f%2e/", "/x%3F./")]);
        assert!(matches!(canonicalize("/a%e4%b8%ad"), Ok(Cow::Owned(_))));
    }

    #[test]
    fn canonical_output_is_a_fixed_point() {
        for input in ["/ap%69", "/a%e4%b8%ad/%7e", "/a%2e", "/a%25zz"] {
            let once = canonicalize(input).unwrap().into_owned();
            assert_eq!(canonicalize(&once), Ok(Cow::Borrowed(&*once)), "{input:?}");
        }
    }

    #[test]
    fn refuses_raw_and_encoded_dot_segments() {
        refuses(DotSegment, &["/..", "/a/../b", "/a/./b", "/a/."]);
        refuses(DotSegment, &["/%2e%2e/x", "/%2E./x", "/.%2e/"]);
        refuses(DotSegment, &["/a/%2e%2E", "/a/%2e"]);
    }

    #[test]
    fn refuses_empty_segments_except_a_trailing_slash() {
        refuses(EmptySegment, &["//", "/a//b", "//a", "/a//"]);
    }

    #[test]
    fn refuses_separators_hidden_by_parameters_backslashes_or_escapes() {
        refuses(Semicolon, &["/public/..;/admin", "/a;b", "/a%3bb"]);
        refuses(EncodedSeparator, &["/a%2fb", "/a%2Fb", "/a%5cb"]);
        refuses(Backslash, &["/a\\b", "/public\\..\\admin"]);
    }

    #[test]
    fn refuses_double_encoding_but_keeps_a_lone_percent_25() {
        refuses(DoubleEncoding, &["/a%252e%252e/", "/a%252f"]);
        refuses(DoubleEncoding, &["/a%25%32%65", "/a%2525"]);
        accepts(&[("/a%25", "/a%25"), ("/a%25zz", "/a%25zz")]);
    }

    #[test]
    fn refuses_malformed_percent_escapes() {
        refuses(BadPercentEncoding, &["/a%2", "/a%zz", "/a%", "/a%%41"]);
    }

    #[test]
    fn refuses_invalid_utf8_including_overlong_forms_and_surrogates() {
        refuses(InvalidUtf8, &["/a%C0%AE", "/a%E0%80%AE", "/a%ED%A0%80"]);
        refuses(InvalidUtf8, &["/a%F4%90%80%80", "/a%E4%B8", "/a%80"]);
        refuses(InvalidUtf8, &["/a%E4/%B8%AD", "/a%E4%B8x"]);
    }

    #[test]
    fn refuses_control_bytes_raw_non_ascii_and_delimiters() {
        refuses(ControlByte, &["/a%00b", "/a%0ab", "/a%7F", "/a\u{7f}"]);
        refuses(ControlByte, &["/a\0b", "/a\r\nb"]);
        refuses(NonAscii, &["/a\u{4e2d}", "/caf\u{e9}"]);
        refuses(InvalidChar, &["/a b", "/a?b", "/a|b", "/a\"b", "/a<b>"]);
        refuses(Fragment, &["/a#b", "/#"]);
    }

    #[test]
    fn refuses_paths_not_in_origin_form() {
        refuses(NotOriginForm, &["*", "", "api", "http://x/"]);
    }

    #[test]
    fn names_rejections_in_snake_case() {
        assert_eq!(DoubleEncoding.as_str(), "double_encoding");
        assert_eq!(NotOriginForm.to_string(), "not_origin_form");
    }
}
