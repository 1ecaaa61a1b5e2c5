//! A minimal HTTP/1.1 response framer shared by the benchmark's load tools: enough to know
//! where a small response ends on a keep-alive connection, nothing more.

/// A complete response at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framed {
    /// Bytes the response occupies (head and body).
    pub len: usize,
    pub status: u16,
    /// The server will close the connection after it (`Connection: close`).
    pub close: bool,
}

/// `Some` once `buf` holds a whole response: framed by `Content-Length`, by chunked
/// encoding, or bodiless by status. `Err` for a response this framer cannot delimit.
pub fn frame(buf: &[u8]) -> Result<Option<Framed>, String> {
    let Some(head_end) = find(buf, b"\r\n\r\n").map(|i| i + 4) else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line: {status_line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    let mut close = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| "bad content-length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let body_end = if chunked {
        // Bodies here are a few bytes: the last-chunk marker ends them.
        match find(&buf[head_end..], b"0\r\n\r\n") {
            Some(i) => head_end + i + 5,
            None => return Ok(None),
        }
    } else if let Some(length) = length {
        head_end + length
    } else if status < 200 || status == 204 || status == 304 {
        head_end
    } else {
        return Err(format!("status {status} without a length"));
    };
    Ok((buf.len() >= body_end).then_some(Framed {
        len: body_end,
        status,
        close,
    }))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A `GET /` request with the given extra header lines (`Name: value`).
pub fn get_request(host: &str, headers: &[String]) -> Vec<u8> {
    let mut request = format!("GET / HTTP/1.1\r\nHost: {host}\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request.into_bytes()
}
