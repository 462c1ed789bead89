//! One HTTP/1.1 `GET` exchange on a kept-alive byte stream: write the request, read the response head
//! (parsed by `httparse`), then the body as framed by `Content-Length`, chunked transfer coding or connection close.
//!
//! Why not hyper's client connection: a hyper HTTP/1 client connection is a driver task plus a request channel, an
//! 8 KiB read buffer kept while idle and another reserved after each body, i.e. ≈ 33 KiB of heap per kept-alive
//! kubelet connection (heap profile at 5,000 nodes in `BENCHMARKS.md`), and a task hand-off on every exchange. A
//! scrape is one request at a time on a connection owned by one worker, so the exchange runs inline on the
//! worker's stream and buffers, and an idle connection holds only its socket and TLS state.
//!
//! This module knows nothing of kubelets, TLS, pooling or gzip: it returns the head and the raw (still encoded)
//! body bytes.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest response head accepted, in bytes (Go's `http.Transport` default `MaxResponseHeaderBytes` is 1 MiB;
/// a kubelet's head is a few hundred bytes).
pub const MAX_HEAD_BYTES: usize = 64 << 10;

/// Most headers parsed in a response head.
const MAX_HEADERS: usize = 64;

/// How much is read from the stream at a time when the body's length is not known.
const READ_STEP: usize = 16 << 10;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The connection was closed or reset before any byte of a response arrived: on a reused kept-alive
    /// connection this is the server having closed it while idle, and the request may be retried on a new one.
    #[error("connection closed before any response")]
    Stale(#[source] io::Error),
    /// Reading or writing the stream failed.
    #[error("connection error")]
    Io(#[from] io::Error),
    /// The stream ended in the middle of a response.
    #[error("connection closed in the middle of the response")]
    Truncated,
    /// The response head is not valid HTTP/1.x.
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    /// The body is longer than the limit (bytes), as declared or as received.
    #[error("body exceeds {0} bytes")]
    BodyTooLarge(usize),
}

/// What the caller needs from a response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// `Content-Encoding: gzip`.
    pub gzip: bool,
    /// The connection can carry another request after this response.
    pub keep_alive: bool,
}

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// Sends `request` (a complete request head) and reads the response: head returned, body bytes appended to
/// `body` (cleared first) as received on the wire (after removing chunked framing, before any content decoding).
/// `scratch` is the caller's reusable read buffer. At most `body_limit` body bytes are accepted.
///
/// # Errors
/// [`HttpError`]: I/O, a connection closed before a response ([`HttpError::Stale`]) or during one, a malformed
/// head or chunk framing, or a body over the limit.
pub async fn get<S>(
    stream: &mut S,
    request: &[u8],
    scratch: &mut Vec<u8>,
    body: &mut Vec<u8>,
    body_limit: usize,
) -> Result<Head, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    scratch.clear();
    body.clear();
    let stale = |error: io::Error| match error.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => HttpError::Stale(error),
        _ => HttpError::Io(error),
    };
    stream.write_all(request).await.map_err(stale)?;
    stream.flush().await.map_err(stale)?;

    // The head.
    let (head, framing, head_len) = loop {
        if let Some(parsed) = parse_head(scratch)? {
            break parsed;
        }
        if scratch.len() >= MAX_HEAD_BYTES {
            return Err(HttpError::Malformed("response head too large"));
        }
        scratch.reserve(READ_STEP.min(MAX_HEAD_BYTES - scratch.len()).max(1024));
        let n = match stream.read_buf(scratch).await {
            Ok(n) => n,
            Err(error) if scratch.is_empty() => return Err(stale(error)),
            Err(error) => return Err(HttpError::Io(error)),
        };
        if n == 0 {
            return Err(if scratch.is_empty() {
                HttpError::Stale(io::ErrorKind::UnexpectedEof.into())
            } else {
                HttpError::Truncated
            });
        }
    };
    let head = Head {
        keep_alive: head.keep_alive && framing != Framing::UntilClose,
        ..head
    };
    let rest = &scratch[head_len..];
    match framing {
        Framing::Length(length) => {
            let length = usize::try_from(length)
                .ok()
                .filter(|&l| l <= body_limit)
                .ok_or(HttpError::BodyTooLarge(body_limit))?;
            let early = rest.len().min(length);
            body.reserve_exact(length);
            body.extend_from_slice(&rest[..early]);
            let mut extra = rest.len() > length;
            while body.len() < length {
                if stream.read_buf(body).await? == 0 {
                    return Err(HttpError::Truncated);
                }
            }
            if body.len() > length {
                body.truncate(length);
                extra = true;
            }
            // Bytes beyond the declared body: the server is confused; do not reuse the connection.
            Ok(Head {
                keep_alive: head.keep_alive && !extra,
                ..head
            })
        }
        Framing::UntilClose => {
            let over = body_limit.saturating_add(1);
            body.extend_from_slice(&rest[..rest.len().min(over)]);
            loop {
                if body.len() > body_limit {
                    body.truncate(body_limit);
                    return Err(HttpError::BodyTooLarge(body_limit));
                }
                // Never read more than one byte past the limit.
                let room = over - body.len();
                body.reserve(READ_STEP.min(room));
                let cap = u64::try_from(room).unwrap_or(u64::MAX);
                if (&mut *stream).take(cap).read_buf(body).await? == 0 {
                    return Ok(head);
                }
            }
        }
        Framing::Chunked => {
            scratch.drain(..head_len);
            let mut chunks = Chunked::default();
            loop {
                let consumed = chunks.decode(scratch, body, body_limit)?;
                scratch.drain(..consumed);
                if chunks.done {
                    let keep_alive = head.keep_alive && scratch.is_empty();
                    return Ok(Head { keep_alive, ..head });
                }
                scratch.reserve(READ_STEP);
                if stream.read_buf(scratch).await? == 0 {
                    return Err(HttpError::Truncated);
                }
            }
        }
    }
}

/// Parses a complete head from the start of `buf`: `None` until it is complete.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, Framing, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::Malformed("too many headers"));
        }
        Err(_) => return Err(HttpError::Malformed("invalid status line or header")),
    };
    let status = response
        .code
        .ok_or(HttpError::Malformed("no status code"))?;
    let http10 = response.version == Some(0);
    let mut gzip = false;
    let mut length = None;
    let mut chunked = false;
    let mut close = http10;
    for header in response.headers.iter() {
        let name = header.name;
        let value = header.value;
        if name.eq_ignore_ascii_case("content-length") {
            let parsed = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or(HttpError::Malformed("invalid Content-Length"))?;
            if length.is_some_and(|l| l != parsed) {
                return Err(HttpError::Malformed("conflicting Content-Length headers"));
            }
            length = Some(parsed);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding applied must be chunked for the body to be delimited by it (RFC 9112 §6.3).
            chunked = value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            if !chunked {
                close = true;
            }
        } else if name.eq_ignore_ascii_case("content-encoding") {
            gzip = value.trim_ascii().eq_ignore_ascii_case(b"gzip");
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    close = false;
                }
            }
        }
    }
    // No body: 1xx, 204 and 304 (RFC 9112 §6.3). A 1xx interim response is not expected for a plain GET.
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked
    } else if let Some(length) = length {
        Framing::Length(length)
    } else {
        Framing::UntilClose
    };
    let head = Head {
        status,
        gzip,
        keep_alive: !close,
    };
    Ok(Some((head, framing, head_len)))
}

/// Incremental decoder of the chunked transfer coding (RFC 9112 §7.1).
#[derive(Debug, Default)]
struct Chunked {
    /// Data bytes left in the current chunk, then its CRLF.
    state: ChunkState,
    /// The last chunk and the trailer section have been read.
    done: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk's data, with this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// Inside the trailer section after the last chunk.
    Trailer,
}

impl Chunked {
    /// Decodes as much of `input` as is complete, appending chunk data to `out`; returns the bytes consumed.
    fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<usize, HttpError> {
        let mut at = 0;
        while !self.done {
            let rest = &input[at..];
            match self.state {
                ChunkState::Size => {
                    let Some(line) = line(rest)? else { break };
                    at += line.len() + 2;
                    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
                    let size = parse_hex(digits.trim_ascii())?;
                    self.state = if size == 0 {
                        ChunkState::Trailer
                    } else {
                        let room = limit.saturating_sub(out.len()) as u64;
                        if size > room {
                            return Err(HttpError::BodyTooLarge(limit));
                        }
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if rest.is_empty() {
                        break;
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                    out.extend_from_slice(&rest[..take]);
                    at += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::DataEnd => {
                    if rest.len() < 2 {
                        break;
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(HttpError::Malformed("chunk data not followed by CRLF"));
                    }
                    at += 2;
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailer => {
                    let Some(line) = line(rest)? else { break };
                    at += line.len() + 2;
                    if line.is_empty() {
                        self.done = true;
                    }
                }
            }
        }
        Ok(at)
    }
}

/// The next CRLF-terminated line of `input` (without the CRLF), `None` if incomplete.
fn line(input: &[u8]) -> Result<Option<&[u8]>, HttpError> {
    match memchr::memchr(b'\n', input) {
        Some(end) if end > 0 && input[end - 1] == b'\r' => Ok(Some(&input[..end - 1])),
        Some(_) => Err(HttpError::Malformed("bare LF in chunked framing")),
        // A size or trailer line longer than this is not a kubelet's.
        None if input.len() > 4096 => Err(HttpError::Malformed("chunk framing line too long")),
        None => Ok(None),
    }
}

fn parse_hex(digits: &[u8]) -> Result<u64, HttpError> {
    if digits.is_empty() || digits.len() > 15 {
        return Err(HttpError::Malformed("invalid chunk size"));
    }
    digits.iter().try_fold(0u64, |size, &d| {
        let value = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return Err(HttpError::Malformed("invalid chunk size")),
        };
        Ok(size << 4 | u64::from(value))
    })
}

#[cfg(test)]
mod tests;
