#![allow(clippy::expect_used)] // A test fails by panicking; `expect` says which step broke.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const REQUEST: &[u8] = b"GET /metrics/resource HTTP/1.1\r\nHost: n:10250\r\n\r\n";

/// Serves `response` to one request over an in-memory pipe, `piece` bytes per write (to split heads, chunk sizes
/// and CRLFs across reads), closing the server side afterwards when `close`.
async fn exchange(
    response: &[u8],
    piece: usize,
    close: bool,
    limit: usize,
) -> (Result<Head, HttpError>, Vec<u8>) {
    let (mut client, mut server) = tokio::io::duplex(256);
    let response = response.to_vec();
    let serve = tokio::spawn(async move {
        let mut request = vec![0u8; REQUEST.len()];
        server.read_exact(&mut request).await.expect("request");
        assert_eq!(request, REQUEST, "the request is sent as given");
        for part in response.chunks(piece.max(1)) {
            if server.write_all(part).await.is_err() {
                return; // the client gave up (e.g. body over the limit)
            }
        }
        if close {
            drop(server);
        } else {
            // Keep the connection open until the client is done.
            let mut rest = Vec::new();
            let _ = server.read_to_end(&mut rest).await;
        }
    });
    let (mut scratch, mut body) = (Vec::new(), Vec::new());
    let result = get(&mut client, REQUEST, &mut scratch, &mut body, limit).await;
    drop(client);
    serve.await.expect("server task");
    (result, body)
}

fn ok(status: u16, gzip: bool, keep_alive: bool) -> Head {
    Head {
        status,
        gzip,
        keep_alive,
    }
}

#[tokio::test]
async fn bodies_are_read_whatever_their_framing_and_however_they_are_split() {
    struct Case {
        name: &'static str,
        response: &'static [u8],
        close: bool,
        head: Head,
        body: &'static [u8],
    }
    let cases = [
        Case {
            name: "Content-Length",
            response: b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world",
            close: false,
            head: ok(200, false, true),
            body: b"hello world",
        },
        Case {
            name: "chunked, as Go's net/http sends bodies over 2 KiB, with gzip",
            response: b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            close: false,
            head: ok(200, true, true),
            body: b"hello world",
        },
        Case {
            name: "chunked with extensions, upper-case hex and a trailer",
            response: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nA;name=value\r\n0123456789\r\n1\r\n!\r\n0\r\nX-Trailer: yes\r\n\r\n",
            close: false,
            head: ok(200, false, true),
            body: b"0123456789!",
        },
        Case {
            name: "chunked wins over Content-Length",
            response: b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            close: false,
            head: ok(200, false, true),
            body: b"ok",
        },
        Case {
            name: "delimited by close",
            response: b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
            close: true,
            head: ok(200, false, false),
            body: b"until the end",
        },
        Case {
            name: "Connection: close",
            response: b"HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 12\r\n\r\nUnauthorized",
            close: false,
            head: ok(401, false, false),
            body: b"Unauthorized",
        },
        Case {
            name: "HTTP/1.0 closes unless keep-alive",
            response: b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
            close: false,
            head: ok(200, false, false),
            body: b"ok",
        },
        Case {
            name: "HTTP/1.0 with keep-alive",
            response: b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok",
            close: false,
            head: ok(200, false, true),
            body: b"ok",
        },
        Case {
            name: "204 has no body",
            response: b"HTTP/1.1 204 No Content\r\n\r\n",
            close: false,
            head: ok(204, false, true),
            body: b"",
        },
        Case {
            name: "bytes after the declared body make the connection unusable",
            response: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
            close: false,
            head: ok(200, false, false),
            body: b"ok",
        },
    ];
    for case in cases {
        for piece in [1, 2, 3, 7, 64, 4096] {
            let (result, body) = exchange(case.response, piece, case.close, 1 << 20).await;
            let head = result.unwrap_or_else(|e| panic!("{} (pieces of {piece}): {e}", case.name));
            assert_eq!(head, case.head, "{} (pieces of {piece})", case.name);
            assert_eq!(body, case.body, "{} (pieces of {piece})", case.name);
        }
    }
}

#[tokio::test]
async fn broken_responses_fail_with_the_right_error() {
    struct Case {
        name: &'static str,
        response: &'static [u8],
        close: bool,
        limit: usize,
        want: fn(&HttpError) -> bool,
    }
    let cases = [
        Case {
            name: "closed before any byte: stale, retryable",
            response: b"",
            close: true,
            limit: 1 << 20,
            want: |e| matches!(e, HttpError::Stale(_)),
        },
        Case {
            name: "closed inside the head",
            response: b"HTTP/1.1 200 OK\r\nContent-Le",
            close: true,
            limit: 1 << 20,
            want: |e| matches!(e, HttpError::Truncated),
        },
        Case {
            name: "closed inside a Content-Length body",
            response: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            close: true,
            limit: 1 << 20,
            want: |e| matches!(e, HttpError::Truncated),
        },
        Case {
            name: "closed inside a chunk",
            response: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nshort",
            close: true,
            limit: 1 << 20,
            want: |e| matches!(e, HttpError::Truncated),
        },
        Case {
            name: "not HTTP",
            response: b"\x00\xff garbage that is not a status line\r\n\r\n",
            close: true,
            limit: 1 << 20,
            want: |e| matches!(e, HttpError::Malformed(_)),
        },
        Case {
            name: "invalid chunk size",
            response: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            close: true,
            limit: 1 << 20,
            want: |e| matches!(e, HttpError::Malformed("invalid chunk size")),
        },
        Case {
            name: "chunk data without its CRLF",
            response: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n",
            close: true,
            limit: 1 << 20,
            want: |e| matches!(e, HttpError::Malformed("chunk data not followed by CRLF")),
        },
        Case {
            name: "conflicting lengths",
            response: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
            close: true,
            limit: 1 << 20,
            want: |e| matches!(e, HttpError::Malformed("conflicting Content-Length headers")),
        },
        Case {
            name: "declared length over the limit, refused before reading",
            response: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
            close: false,
            limit: 10,
            want: |e| matches!(e, HttpError::BodyTooLarge(10)),
        },
        Case {
            name: "chunks over the limit",
            response: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n01234567\r\n8\r\n01234567\r\n0\r\n\r\n",
            close: true,
            limit: 10,
            want: |e| matches!(e, HttpError::BodyTooLarge(10)),
        },
        Case {
            name: "a close-delimited body over the limit",
            response: b"HTTP/1.1 200 OK\r\n\r\n0123456789abcdef",
            close: true,
            limit: 10,
            want: |e| matches!(e, HttpError::BodyTooLarge(10)),
        },
    ];
    for case in cases {
        let (result, body) = exchange(case.response, 3, case.close, case.limit).await;
        match result {
            Err(error) => assert!((case.want)(&error), "{}: {error:?}", case.name),
            Ok(head) => panic!("{}: unexpectedly succeeded with {head:?}", case.name),
        }
        assert!(
            body.len() <= case.limit,
            "{}: never past the limit",
            case.name
        );
    }
}

#[tokio::test]
async fn a_head_larger_than_the_cap_is_refused() {
    let mut response = b"HTTP/1.1 200 OK\r\n".to_vec();
    while response.len() <= MAX_HEAD_BYTES {
        response.extend_from_slice(
            b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
        );
    }
    let (result, _) = exchange(&response, 4096, true, 1 << 20).await;
    assert!(matches!(result, Err(HttpError::Malformed(_))), "{result:?}");
}

#[tokio::test]
async fn one_connection_carries_consecutive_exchanges() {
    let (mut client, mut server) = tokio::io::duplex(1024);
    let serve = tokio::spawn(async move {
        for body in ["first", "second!"] {
            let mut request = vec![0u8; REQUEST.len()];
            server.read_exact(&mut request).await.expect("request");
            let response = format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                body.len()
            );
            server.write_all(response.as_bytes()).await.expect("write");
        }
    });
    let (mut scratch, mut body) = (Vec::new(), Vec::new());
    for want in ["first", "second!"] {
        let head = get(&mut client, REQUEST, &mut scratch, &mut body, 1 << 20)
            .await
            .expect("exchange");
        assert!(head.keep_alive);
        assert_eq!(body, want.as_bytes(), "each body is exactly its own");
    }
    serve.await.expect("server task");
}
