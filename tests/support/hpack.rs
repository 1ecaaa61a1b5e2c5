//! HPACK (RFC 7541) for the raw HTTP/2 client: request blocks written as literals without
//! Huffman, and a decoder for what a server sends (its dynamic table and Huffman strings),
//! so that a raw client can read the `:status` of each answer.

use std::collections::VecDeque;

/// A header field as decoded: (name, value).
pub type Field = (String, String);

/// An integer with an `n`-bit prefix (RFC 7541 5.1); `flags` fills the bits above it.
pub fn int(out: &mut Vec<u8>, flags: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    int(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// A literal field without indexing and with a new name (6.2.2): the table is untouched.
pub fn literal(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(0x00);
    string(out, name.as_bytes());
    string(out, value);
}

/// A literal field with a new name that the decoder adds to its dynamic table (6.2.1).
pub fn indexed_literal(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(0x40);
    string(out, name.as_bytes());
    string(out, value);
}

/// A reference to entry `index` of the static (1–61) or dynamic (62–) table (6.1).
pub fn indexed(out: &mut Vec<u8>, index: usize) {
    int(out, 0x80, 7, index);
}

/// A request's header block: the pseudo-headers for `https://localhost{path}`, then
/// `fields`.
pub fn request(method: &str, path: &str, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in [
        (":method", method),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", path),
    ]
    .into_iter()
    .chain(fields.iter().copied())
    {
        literal(&mut out, name, value.as_bytes());
    }
    out
}

/// The decoding side of one connection: its dynamic table persists from block to block.
pub struct Decoder {
    table: VecDeque<Field>,
    size: usize,
    max: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        // SETTINGS_HEADER_TABLE_SIZE's initial value (RFC 9113 6.5.2).
        Self {
            table: VecDeque::new(),
            size: 0,
            max: 4096,
        }
    }
}

impl Decoder {
    /// Every field of one complete header block, in order.
    pub fn decode(&mut self, block: &[u8]) -> Result<Vec<Field>, String> {
        let mut input = Input(block);
        let mut fields = Vec::new();
        while let Some(&first) = input.0.first() {
            if first & 0x80 != 0 {
                let index = input.int(7)?;
                fields.push(self.entry(index)?);
            } else if first & 0xe0 == 0x20 {
                self.max = input.int(5)?;
                self.evict(0);
            } else {
                // 0x40: add to the table; 0x00 and 0x10: never (the latter never re-encoded).
                let (adds, n) = if first & 0x40 != 0 {
                    (true, 6)
                } else {
                    (false, 4)
                };
                let index = input.int(n)?;
                let name = match index {
                    0 => input.string()?,
                    _ => self.entry(index)?.0,
                };
                let field = (name, input.string()?);
                if adds {
                    self.add(field.clone());
                }
                fields.push(field);
            }
        }
        Ok(fields)
    }

    fn entry(&self, index: usize) -> Result<Field, String> {
        let own = |(n, v): &(&str, &str)| (n.to_string(), v.to_string());
        match index {
            0 => Err("index 0".into()),
            1..=61 => Ok(own(&STATIC[index - 1])),
            _ => self
                .table
                .get(index - 62)
                .cloned()
                .ok_or_else(|| format!("no table entry {index}")),
        }
    }

    fn add(&mut self, field: Field) {
        let size = field.0.len() + field.1.len() + 32;
        self.evict(size);
        if size <= self.max {
            self.size += size;
            self.table.push_front(field);
        }
    }

    /// Drops the oldest entries until `room` more bytes fit (4.4).
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max {
            let Some((name, value)) = self.table.pop_back() else {
                self.size = 0;
                return;
            };
            self.size -= name.len() + value.len() + 32;
        }
    }
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let (&b, rest) = self.0.split_first().ok_or("truncated block")?;
        self.0 = rest;
        Ok(b)
    }

    fn int(&mut self, n: u32) -> Result<usize, String> {
        let max = (1usize << n) - 1;
        let mut value = usize::from(self.byte()?) & max;
        if value < max {
            return Ok(value);
        }
        for shift in (0..28).step_by(7) {
            let b = self.byte()?;
            value += usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("integer too long".into())
    }

    fn string(&mut self) -> Result<String, String> {
        let huffman = self.0.first().is_some_and(|b| b & 0x80 != 0);
        let len = self.int(7)?;
        if len > self.0.len() {
            return Err("truncated string".into());
        }
        let (bytes, rest) = self.0.split_at(len);
        self.0 = rest;
        let bytes = if huffman {
            huffman_decode(bytes)?
        } else {
            bytes.to_vec()
        };
        String::from_utf8(bytes).map_err(|_| "a field that is not UTF-8".into())
    }
}

/// Decodes a Huffman string (5.2). The code of RFC 7541 Appendix B is canonical, so it is
/// rebuilt from each symbol's code length: codes of one length are consecutive, in symbol
/// order, and each length starts at (the previous length's end) << 1.
pub fn huffman_decode(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut by_length: Vec<Vec<u16>> = vec![Vec::new(); 31];
    for (symbol, &len) in HUFFMAN_LENGTHS.iter().enumerate() {
        by_length[usize::from(len)].push(symbol as u16);
    }
    let mut first = [0u32; 31];
    let mut next = 0u32;
    for len in 1..31 {
        first[len] = next;
        next = (next + by_length[len].len() as u32) << 1;
    }
    let mut out = Vec::new();
    let (mut code, mut len) = (0u32, 0usize);
    for bit in bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
    {
        code = (code << 1) | u32::from(bit);
        len += 1;
        let offset = code.wrapping_sub(first[len]) as usize;
        if let Some(&symbol) = by_length[len].get(offset) {
            if symbol == 256 {
                return Err("EOS in a Huffman string".into());
            }
            out.push(symbol as u8);
            code = 0;
            len = 0;
        } else if len == 30 {
            return Err("not a Huffman code".into());
        }
    }
    // What is left must be padding: fewer than 8 bits, all ones (the start of EOS).
    if len >= 8 || code != (1 << len) - 1 {
        return Err("bad Huffman padding".into());
    }
    Ok(out)
}

/// The code length of each symbol, 0–255 and EOS (RFC 7541 Appendix B).
const HUFFMAN_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

/// The static table (RFC 7541 Appendix A), entries 1–61.
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];
