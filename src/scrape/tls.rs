//! [`TlsStream`]: the TLS client of kubelet connections, driven over rustls's unbuffered API so that an idle
//! kept-alive connection holds no buffer.
//!
//! Why not tokio-rustls: its buffered `ClientConnection` keeps a record-deframer buffer of at least 4 KiB for as
//! long as the connection lives, plus plaintext and ciphertext chunk queues (≈ 8 KiB per idle kubelet connection in
//! a heap profile at 5,000 nodes). The pool keeps one connection per kubelet, so that was ~20 MiB of RSS holding
//! nothing.
//! Here the three buffers (ciphertext received, plaintext decrypted but not yet read, ciphertext not yet sent) are
//! plain `Vec`s released whenever they drain, which a complete HTTP exchange always leaves them: an idle connection
//! is its socket and rustls's connection state (keys, handshake outcome). `tests/tls_memory.rs` measures the
//! difference: RSS per idle connection fell from 12.9 to 4.7 KB after a gzip-sized body, and from 25.3 to 4.7 KB
//! after a 32 KiB one (mimalloc), as tokio-rustls kept its deframer buffer as large as the last read left it.
//!
//! What callers can observe matches tokio-rustls: handshake and record errors are `io::Error`s of kind
//! `InvalidData` wrapping the `rustls::Error` (so messages still name the unknown issuer or the SANs presented);
//! the peer's close_notify reads as EOF; a TCP EOF without close_notify is an `UnexpectedEof` error (a stale
//! kept-alive connection or a truncated response to the HTTP layer, never a silently short body); shutdown sends
//! close_notify. TLS 1.3 session tickets and key updates are handled inside rustls.
//!
//! This module knows nothing of HTTP, kubelets or pooling.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::ClientConfig;
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::pki_types::ServerName;
use rustls::unbuffered::{
    AppDataRecord, ConnectionState, EncodeError, EncryptError, InsufficientSizeError,
    UnbufferedStatus,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Bytes of a TLS record header: content type, legacy version, length (RFC 8446 §5.1).
const RECORD_HEADER_BYTES: usize = 5;

/// Largest TLS record on the wire: a header, 2^14 bytes of plaintext and at most 256 bytes of protection
/// overhead (RFC 8446 §5.2). A read that does not know the length of the next record makes room for this much,
/// so that one read can complete any record.
const MAX_RECORD_BYTES: usize = RECORD_HEADER_BYTES + (1 << 14) + 256;

/// Smallest room made for a read when a record header leads the buffer: mid-handshake that header may belong to a
/// record already complete (rustls keeps a handshake message's records until the message is whole), and a read of
/// a few bytes would waste a system call when more records are likely to follow.
const MIN_READ_BYTES: usize = 1024;

/// Most plaintext encrypted by one `poll_write`: one full record, which bounds the outgoing buffer (a kubelet
/// request is a few hundred bytes).
const MAX_WRITE_BYTES: usize = 1 << 14;

/// Turns spent encoding the alert rustls queues after an error before giving up on it (one alert takes two).
const MAX_ALERT_TURNS: usize = 4;

/// rustls's words for an unclean close, so messages read as they did with tokio-rustls.
const UNEXPECTED_EOF: &str = "peer closed connection without sending TLS close_notify: \
     https://docs.rs/rustls/latest/rustls/manual/_03_howto/index.html#unexpected-eof";

/// A TLS client connection over TCP: `AsyncRead + AsyncWrite`, holding no buffer while idle.
pub struct TlsStream {
    tcp: TcpStream,
    conn: UnbufferedClientConnection,
    /// Ciphertext received that rustls has not consumed yet: a partial record (or, mid-handshake, the records of a
    /// handshake message not yet complete).
    incoming: Vec<u8>,
    /// Plaintext decrypted but not yet read: the rest of a record larger than the reader's buffer.
    plaintext: Plaintext,
    /// Ciphertext encoded but not yet written to the socket.
    outgoing: Outgoing,
    /// The peer sent close_notify: reads return EOF.
    peer_closed: bool,
    /// The socket reached EOF before the peer's close_notify: reads fail with `UnexpectedEof`.
    tcp_eof: bool,
    /// Our close_notify is queued: no more writes.
    write_closed: bool,
}

/// Decrypted bytes waiting for a reader; the vector is released once all are read.
#[derive(Default)]
struct Plaintext {
    bytes: Vec<u8>,
    /// How many of `bytes` were read already.
    read: usize,
}

/// Encoded TLS bytes waiting for the socket; the vector is released once all are sent.
#[derive(Default)]
struct Outgoing {
    bytes: Vec<u8>,
    /// How many of `bytes` were written already.
    sent: usize,
}

/// What the caller of [`TlsStream::turn`] wants from the connection.
enum Goal<'a, 'b> {
    /// The handshake completed.
    Handshake,
    /// Application data, copied into this buffer.
    Read(&'a mut ReadBuf<'b>),
    /// These application bytes encrypted.
    Write(&'a [u8]),
    /// A close_notify alert queued.
    CloseNotify,
}

/// The outcome of one turn of rustls's state machine.
enum Turn {
    /// A state was handled that needs no I/O (a handshake record encoded, a session ticket processed, plaintext
    /// set aside): turn again.
    Again,
    /// The goal is met; for reads and writes, with this many application bytes.
    Done(usize),
    /// Nothing more can happen until more ciphertext arrives from the peer.
    NeedsInput,
    /// The peer sent close_notify: no more application data will arrive.
    PeerClosed,
    /// Both sides sent close_notify: nothing can be sent either.
    Closed,
}

/// Runs the TLS handshake for `server_name` on `tcp`, verifying the server as `config` says.
///
/// # Errors
/// An `io::Error`: of kind `InvalidData` wrapping the `rustls::Error` when the handshake is refused (unknown
/// issuer, name mismatch, alert from the server), `UnexpectedEof` when the server closes mid-handshake, or the
/// socket's error.
pub async fn connect(
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    tcp: TcpStream,
) -> io::Result<TlsStream> {
    let conn = UnbufferedClientConnection::new(config, server_name).map_err(tls_error)?;
    let mut stream = TlsStream {
        tcp,
        conn,
        incoming: Vec::new(),
        plaintext: Plaintext::default(),
        outgoing: Outgoing::default(),
        peer_closed: false,
        tcp_eof: false,
        write_closed: false,
    };
    poll_fn(|cx| stream.poll_handshake(cx)).await?;
    Ok(stream)
}

// === impl TlsStream ===

impl TlsStream {
    /// Capacities of the incoming, plaintext and outgoing buffers: all 0 once an exchange is complete.
    #[cfg(test)]
    pub(crate) fn buffer_capacities(&self) -> [usize; 3] {
        [
            self.incoming.capacity(),
            self.plaintext.bytes.capacity(),
            self.outgoing.bytes.capacity(),
        ]
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let handshake_eof = || io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
        loop {
            match self.turn(&mut Goal::Handshake)? {
                Turn::Done(_) => {
                    // Our last flight (the client Finished) goes out before the connection is handed over.
                    ready!(self.poll_send(cx))?;
                    return Poll::Ready(Ok(()));
                }
                Turn::Again => {}
                Turn::NeedsInput => {
                    ready!(self.poll_send(cx))?;
                    if ready!(self.poll_receive(cx))? == 0 {
                        return Poll::Ready(Err(handshake_eof()));
                    }
                }
                Turn::PeerClosed | Turn::Closed => return Poll::Ready(Err(handshake_eof())),
            }
        }
    }

    /// Hands rustls the ciphertext received so far and handles the state it reaches, towards `goal`. Never does
    /// I/O except a last-gasp alert after an error.
    fn turn(&mut self, goal: &mut Goal<'_, '_>) -> io::Result<Turn> {
        let Self {
            conn,
            incoming,
            plaintext,
            outgoing,
            ..
        } = self;
        let UnbufferedStatus { mut discard, state } = conn.process_tls_records(incoming);
        let turn = match state {
            Ok(state) => handle(state, goal, &mut discard, plaintext, outgoing),
            Err(error) => Err(tls_error(error)),
        };
        discard_front(incoming, discard);
        if turn.is_err() {
            self.send_alert();
        }
        turn
    }

    /// After a failure, encodes the alert rustls queued for the peer (bad certificate, decrypt error, ...) and
    /// tries once to send it without waiting, as tokio-rustls does; the caller's error is what matters.
    fn send_alert(&mut self) {
        for _ in 0..MAX_ALERT_TURNS {
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut self.incoming);
            let more = match state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => self
                    .outgoing
                    .encode(|out| encode.encode(out), encode_room)
                    .is_ok(),
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    true
                }
                _ => false,
            };
            discard_front(&mut self.incoming, discard);
            if !more {
                break;
            }
        }
        if let Ok(sent) = self.tcp.try_write(self.outgoing.pending()) {
            self.outgoing.advance(sent);
        }
    }

    /// Writes the pending ciphertext to the socket.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.outgoing.pending().is_empty() {
            let sent = ready!(Pin::new(&mut self.tcp).poll_write(cx, self.outgoing.pending()))?;
            if sent == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.outgoing.advance(sent);
        }
        Poll::Ready(Ok(()))
    }

    /// Reads ciphertext from the socket into `incoming`; `Ok(0)` at EOF.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.tcp.poll_read_ready(cx))?;
            // Room is made only once the socket is readable, so a connection waiting for data holds no buffer.
            self.incoming.reserve(read_size(&self.incoming));
            let read = self.tcp.try_read_buf(&mut self.incoming);
            release_if_empty(&mut self.incoming);
            match read {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {} // spurious readiness
                read => return Poll::Ready(read),
            }
        }
    }

    /// Queues close_notify if the connection can still carry it; best effort, as a connection being shut down
    /// has nothing left to lose.
    fn queue_close_notify(&mut self) {
        loop {
            match self.turn(&mut Goal::CloseNotify) {
                Ok(Turn::Again) => {}
                Ok(Turn::PeerClosed) => self.peer_closed = true,
                Ok(Turn::Done(_) | Turn::NeedsInput | Turn::Closed) | Err(_) => return,
            }
        }
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 || this.plaintext.read_into(buf) > 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.peer_closed {
                return Poll::Ready(Ok(())); // EOF
            }
            if this.tcp_eof {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    UNEXPECTED_EOF,
                )));
            }
            match this.turn(&mut Goal::Read(&mut *buf))? {
                Turn::Done(_) => return Poll::Ready(Ok(())),
                Turn::Again => {}
                Turn::PeerClosed | Turn::Closed => this.peer_closed = true,
                Turn::NeedsInput => {
                    // Send what rustls queued (a key update, an alert) without making the read wait for it.
                    if let Poll::Ready(Err(error)) = this.poll_send(cx) {
                        return Poll::Ready(Err(error));
                    }
                    if ready!(this.poll_receive(cx))? == 0 {
                        this.tcp_eof = true;
                    }
                }
            }
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.write_closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "TLS connection already shut down for writing",
            )));
        }
        // Earlier ciphertext goes first: it keeps records in order and the outgoing buffer bounded.
        ready!(this.poll_send(cx))?;
        let data = &data[..data.len().min(MAX_WRITE_BYTES)];
        loop {
            match this.turn(&mut Goal::Write(data))? {
                Turn::Done(written) => {
                    // Start sending now; what the socket does not take goes out on the next write or flush.
                    if let Poll::Ready(Err(error)) = this.poll_send(cx) {
                        return Poll::Ready(Err(error));
                    }
                    return Poll::Ready(Ok(written));
                }
                Turn::Again => {}
                Turn::PeerClosed => this.peer_closed = true,
                // `connect` returns only once application data may be sent.
                Turn::NeedsInput => {
                    return Poll::Ready(Err(io::Error::other("TLS handshake not complete")));
                }
                Turn::Closed => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "TLS connection closed",
                    )));
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.write_closed {
            this.write_closed = true;
            this.queue_close_notify();
        }
        ready!(this.poll_send(cx))?;
        match ready!(Pin::new(&mut this.tcp).poll_shutdown(cx)) {
            // A peer that already went away needs no shutdown.
            Err(error) if error.kind() == io::ErrorKind::NotConnected => Poll::Ready(Ok(())),
            result => Poll::Ready(result),
        }
    }
}

impl fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("peer", &self.tcp.peer_addr().ok())
            .field("incoming_bytes", &self.incoming.len())
            .field("plaintext_bytes", &self.plaintext.unread().len())
            .field("outgoing_bytes", &self.outgoing.pending().len())
            .field("peer_closed", &self.peer_closed)
            .finish_non_exhaustive()
    }
}

// === impl Plaintext ===

impl Plaintext {
    fn unread(&self) -> &[u8] {
        &self.bytes[self.read..]
    }

    /// Copies what fits into `buf`; returns how many bytes.
    fn read_into(&mut self, buf: &mut ReadBuf<'_>) -> usize {
        let unread = self.unread();
        let copied = unread.len().min(buf.remaining());
        buf.put_slice(&unread[..copied]);
        self.read += copied;
        if self.read == self.bytes.len() {
            *self = Plaintext::default();
        }
        copied
    }

    /// Delivers a decrypted record: straight into the reader's buffer when the goal is a read and nothing older is
    /// waiting, the rest set aside. Returns how many bytes went to the reader.
    fn deliver(&mut self, payload: &[u8], goal: &mut Goal<'_, '_>) -> usize {
        let copied = match goal {
            Goal::Read(buf) if self.unread().is_empty() => {
                let copied = payload.len().min(buf.remaining());
                buf.put_slice(&payload[..copied]);
                copied
            }
            _ => 0,
        };
        self.bytes.extend_from_slice(&payload[copied..]);
        copied
    }
}

// === impl Outgoing ===

impl Outgoing {
    fn pending(&self) -> &[u8] {
        &self.bytes[self.sent..]
    }

    fn advance(&mut self, sent: usize) {
        self.sent += sent;
        if self.sent == self.bytes.len() {
            *self = Outgoing::default();
        }
    }

    /// Appends what `encode` writes. rustls says how much room it needs when the space offered is too small
    /// (`room` reads that from its error), so the buffer grows to exactly that and the call is repeated.
    fn encode<E>(
        &mut self,
        mut encode: impl FnMut(&mut [u8]) -> Result<usize, E>,
        room: impl Fn(&E) -> Option<usize>,
    ) -> io::Result<()>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let needed = match encode(&mut []) {
            Ok(_) => return Ok(()), // nothing to write
            Err(error) => room(&error).ok_or_else(|| io::Error::other(error))?,
        };
        let used = self.bytes.len();
        self.bytes.resize(used + needed, 0);
        match encode(&mut self.bytes[used..]) {
            Ok(written) => {
                self.bytes.truncate(used + written);
                Ok(())
            }
            Err(error) => {
                self.bytes.truncate(used);
                release_if_empty(&mut self.bytes);
                Err(io::Error::other(error))
            }
        }
    }
}

// === helpers ===

/// Handles the state rustls reached (see [`TlsStream::turn`]); `discard` grows by what decrypted records release.
fn handle(
    state: ConnectionState<'_, '_, ClientConnectionData>,
    goal: &mut Goal<'_, '_>,
    discard: &mut usize,
    plaintext: &mut Plaintext,
    outgoing: &mut Outgoing,
) -> io::Result<Turn> {
    match state {
        ConnectionState::ReadTraffic(mut traffic) => {
            let mut copied = 0;
            // Records left in rustls once the reader's buffer is full are taken on the next read.
            while !matches!(goal, Goal::Read(buf) if buf.remaining() == 0) {
                let Some(record) = traffic.next_record() else {
                    break;
                };
                let AppDataRecord {
                    discard: released,
                    payload,
                } = record.map_err(tls_error)?;
                *discard += released;
                copied += plaintext.deliver(payload, goal);
            }
            Ok(match goal {
                Goal::Read(_) if copied > 0 => Turn::Done(copied),
                _ => Turn::Again,
            })
        }
        ConnectionState::EncodeTlsData(mut encode) => {
            outgoing.encode(|out| encode.encode(out), encode_room)?;
            Ok(Turn::Again)
        }
        // The encoded records wait in `outgoing`, which is always sent in order before anything newer.
        ConnectionState::TransmitTlsData(transmit) => {
            transmit.done();
            Ok(Turn::Again)
        }
        ConnectionState::BlockedHandshake => Ok(Turn::NeedsInput),
        ConnectionState::WriteTraffic(mut traffic) => match goal {
            Goal::Handshake => Ok(Turn::Done(0)),
            Goal::Read(_) => Ok(Turn::NeedsInput),
            Goal::Write(data) => {
                outgoing.encode(|out| traffic.encrypt(data, out), encrypt_room)?;
                Ok(Turn::Done(data.len()))
            }
            Goal::CloseNotify => {
                outgoing.encode(|out| traffic.queue_close_notify(out), encrypt_room)?;
                Ok(Turn::Done(0))
            }
        },
        ConnectionState::PeerClosed => Ok(Turn::PeerClosed),
        ConnectionState::Closed => Ok(Turn::Closed),
        // Early data is a server-side state; any state added later is not one a client expects.
        other => Err(io::Error::other(format!("unexpected TLS state {other:?}"))),
    }
}

/// A rustls error as tokio-rustls reports it, so `Display` shows rustls's own message.
fn tls_error(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

fn encode_room(error: &EncodeError) -> Option<usize> {
    match error {
        EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(*required_size)
        }
        _ => None,
    }
}

fn encrypt_room(error: &EncryptError) -> Option<usize> {
    match error {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(*required_size)
        }
        _ => None,
    }
}

/// Room to make for the next read: the rest of the record whose header leads `incoming` (at least
/// [`MIN_READ_BYTES`]), or a whole record when no header is there yet.
fn read_size(incoming: &[u8]) -> usize {
    match incoming {
        [_, _, _, high, low, ..] => {
            let record = RECORD_HEADER_BYTES + usize::from(u16::from_be_bytes([*high, *low]));
            record.saturating_sub(incoming.len()).max(MIN_READ_BYTES)
        }
        _ => MAX_RECORD_BYTES - incoming.len(),
    }
}

/// Drops the first `discard` bytes, which rustls has consumed.
fn discard_front(incoming: &mut Vec<u8>, discard: usize) {
    incoming.drain(..discard);
    release_if_empty(incoming);
}

/// An empty buffer gives its memory back: an idle connection must hold none.
fn release_if_empty(buffer: &mut Vec<u8>) {
    if buffer.is_empty() {
        *buffer = Vec::new();
    }
}

#[cfg(test)]
mod tests;
