//! A deadline for a connection's first request bytes after the TLS handshake.
//!
//! hyper-util's auto (HTTP/1 + HTTP/2) builder reads the first bytes itself to tell the HTTP/2 preface from an
//! HTTP/1 request, and hyper's header-read timer only starts once it hands the connection to HTTP/1. A client that
//! completes the handshake and then sends nothing would hold its connection (socket, task, TLS state) forever; enough
//! of them exhaust file descriptors. [`FirstByteDeadline`] fails the read with `TimedOut` when no byte arrives in
//! time; after the first byte it is a plain pass-through and hyper's own timers apply.
//!
//! This module must not parse HTTP or know about TLS.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// An I/O stream whose reads fail with [`io::ErrorKind::TimedOut`] unless a first byte arrives within the deadline.
pub struct FirstByteDeadline<T> {
    inner: T,
    /// `None` once a byte was read.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<T> FirstByteDeadline<T> {
    /// Wraps `inner`; the deadline starts now and lasts `within`.
    pub fn new(inner: T, within: Duration) -> Self {
        Self {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(within))),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FirstByteDeadline<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.deadline = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if expired {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client sent no request after the TLS handshake",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FirstByteDeadline<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly on broken fixtures
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const WITHIN: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn a_client_that_sends_nothing_is_timed_out_and_one_that_sends_is_not() {
        struct Case {
            name: &'static str,
            /// Bytes the client sends right away (none: it stays silent).
            sends: &'static [u8],
            timed_out: bool,
        }
        let cases = [
            Case {
                name: "a silent client times out",
                sends: b"",
                timed_out: true,
            },
            Case {
                name: "a client that sent a byte is then left to hyper's timers",
                sends: b"G",
                timed_out: false,
            },
        ];
        for case in cases {
            let (server, mut client) = tokio::io::duplex(64);
            let mut stream = FirstByteDeadline::new(server, WITHIN);
            client.write_all(case.sends).await.unwrap();
            let mut buf = [0u8; 8];
            if !case.sends.is_empty() {
                let n = stream.read(&mut buf).await.unwrap();
                assert_eq!(&buf[..n], case.sends, "{}", case.name);
            }
            // Paused clock: the read below auto-advances time past the deadline when nothing else can progress.
            let second = tokio::time::timeout(2 * WITHIN, stream.read(&mut buf)).await;
            match second {
                Ok(Err(error)) => {
                    assert!(case.timed_out, "{}: unexpected {error}", case.name);
                    assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{}", case.name);
                }
                Ok(Ok(n)) => panic!("{}: read {n} bytes from a silent client", case.name),
                Err(_) => assert!(!case.timed_out, "{}: never timed out", case.name),
            }
            drop(client);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn writes_pass_through() {
        let (server, mut client) = tokio::io::duplex(64);
        let mut stream = FirstByteDeadline::new(server, WITHIN);
        stream.write_all(b"HTTP/1.1 408").await.unwrap();
        let mut buf = [0u8; 12];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 408");
    }
}
