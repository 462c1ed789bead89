//! The unbuffered client against a real rustls server (tokio-rustls on the server side) that speaks a tiny line
//! protocol, so each test chooses record sizes, keep-alive and how the server closes.
#![allow(clippy::expect_used)] // A test fails by panicking; `expect` says which step broke.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{HandshakeKind, RootCertStore, ServerConfig, SupportedProtocolVersion};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use super::*;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A test CA.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
}

/// A TLS server on 127.0.0.1 running [`session`] per connection; its tasks are aborted when it is dropped.
struct Server {
    addr: SocketAddr,
    /// How each session ended, in order.
    ends: mpsc::UnboundedReceiver<End>,
    task: JoinHandle<()>,
}

/// How a server session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    HandshakeFailed,
    /// The client sent close_notify.
    ClientCloseNotify,
    /// The client's TCP connection ended without close_notify.
    ClientVanished,
    /// The server sent close_notify (`CLOSE`).
    ServerClosed,
    /// The server closed TCP without close_notify (`DROP`).
    ServerDropped,
}

// === fixtures ===

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("self-sign CA");
        Ca {
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server config whose certificate, from this CA, names `san`.
    fn server_config(
        &self,
        san: IpAddr,
        versions: &[&'static SupportedProtocolVersion],
    ) -> Arc<ServerConfig> {
        let key = KeyPair::generate().expect("leaf key");
        let params = CertificateParams::new(vec![san.to_string()]).expect("leaf params");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .expect("server cert");
        Arc::new(config)
    }

    /// A client config trusting only this CA, as the kubelet client builds it.
    fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).expect("CA is a valid root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl Server {
    async fn start(config: Arc<ServerConfig>) -> Server {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (ends_tx, ends) = mpsc::unbounded_channel();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let task = tokio::spawn(async move {
            let mut sessions = JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, ends_tx) = (acceptor.clone(), ends_tx.clone());
                sessions.spawn(async move {
                    let end = match acceptor.accept(tcp).await {
                        Ok(tls) => session(tls).await,
                        Err(_) => End::HandshakeFailed,
                    };
                    let _ = ends_tx.send(end);
                });
            }
        });
        Server { addr, ends, task }
    }

    /// The default server: TLS 1.3 and 1.2, certificate for 127.0.0.1.
    async fn trusted_by(ca: &Ca) -> Server {
        Server::start(ca.server_config(LOCALHOST, rustls::DEFAULT_VERSIONS)).await
    }

    async fn next_end(&mut self) -> End {
        tokio::time::timeout(Duration::from_secs(10), self.ends.recv())
            .await
            .expect("a session ends")
            .expect("server running")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection's server side. Requests are lines: `SEND <bytes> <write size>` answers [`pattern`] bytes in
/// writes (hence records) of the given size; `RECV <bytes>` reads that many pattern bytes and answers `OK\n`;
/// `CLOSE` sends close_notify; `DROP` closes TCP without it.
async fn session(tls: tokio_rustls::server::TlsStream<TcpStream>) -> End {
    let mut tls = BufReader::new(tls);
    let mut line = String::new();
    loop {
        line.clear();
        match tls.read_line(&mut line).await {
            Ok(0) => return End::ClientCloseNotify,
            Ok(_) => {}
            Err(_) => return End::ClientVanished,
        }
        let number = |word: &str| word.parse::<usize>().expect("number");
        let words: Vec<&str> = line.split_whitespace().collect();
        let served = match words.as_slice() {
            ["SEND", bytes, write] => {
                let body = pattern(number(bytes));
                let mut served = Ok(());
                for piece in body.chunks(number(write)) {
                    served = tls.write_all(piece).await;
                    if served.is_ok() {
                        served = tls.flush().await;
                    }
                }
                served
            }
            ["RECV", bytes] => {
                let mut got = vec![0; number(bytes)];
                let read = tls.read_exact(&mut got).await.map(drop);
                let answer: &[u8] = if got == pattern(got.len()) {
                    b"OK\n"
                } else {
                    b"BAD\n"
                };
                match read {
                    Ok(()) => tls.write_all(answer).await,
                    Err(error) => Err(error),
                }
            }
            ["CLOSE"] => {
                let _ = tls.shutdown().await;
                return End::ServerClosed;
            }
            ["DROP"] => return End::ServerDropped,
            other => panic!("unknown request {other:?}"),
        };
        if served.is_err() {
            return End::ClientVanished;
        }
    }
}

/// `len` bytes that reveal any byte lost, repeated or reordered within 251 bytes.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

async fn connect_to(addr: SocketAddr, config: Arc<ClientConfig>) -> io::Result<TlsStream> {
    let tcp = TcpStream::connect(addr).await.expect("TCP connect");
    tcp.set_nodelay(true).expect("nodelay");
    let name = ServerName::try_from("127.0.0.1").expect("IP server name");
    connect(config, name, tcp).await
}

/// Asks for `bytes` bytes written `write` at a time by the server and reads them `read` at a time.
async fn fetch(stream: &mut TlsStream, bytes: usize, write: usize, read: usize) -> Vec<u8> {
    let request = format!("SEND {bytes} {write}\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    stream.flush().await.expect("flush");
    let mut body = Vec::with_capacity(bytes);
    let mut buf = vec![0; read];
    while body.len() < bytes {
        let want = read.min(bytes - body.len());
        let n = stream.read(&mut buf[..want]).await.expect("read");
        assert_ne!(n, 0, "EOF after {} of {bytes} bytes", body.len());
        body.extend_from_slice(&buf[..n]);
    }
    body
}

/// A TCP relay to `upstream` that passes the server's bytes on `piece` at a time with a pause between, so that
/// records and their headers arrive split over many reads.
async fn dribbling_relay(upstream: SocketAddr, piece: usize) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        let (client, _) = listener.accept().await.expect("accept");
        let server = TcpStream::connect(upstream)
            .await
            .expect("connect upstream");
        client.set_nodelay(true).expect("nodelay");
        let (mut client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        let up = tokio::io::copy(&mut client_read, &mut server_write);
        let down = async {
            let mut buf = vec![0; piece];
            loop {
                let n = server_read.read(&mut buf).await?;
                if n == 0 {
                    return client_write.shutdown().await;
                }
                client_write.write_all(&buf[..n]).await?;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        let _ = tokio::join!(up, down);
    });
    (addr, task)
}

// === tests ===

#[tokio::test]
async fn a_request_gets_its_response() {
    let ca = Ca::new("test CA");
    let server = Server::trusted_by(&ca).await;
    let mut stream = connect_to(server.addr, ca.client_config())
        .await
        .expect("handshake");
    assert_eq!(fetch(&mut stream, 1000, 1000, 4096).await, pattern(1000));
}

#[tokio::test]
async fn a_body_over_many_records_arrives_whole_through_reads_smaller_than_a_record() {
    let ca = Ca::new("test CA");
    let server = Server::trusted_by(&ca).await;
    let mut stream = connect_to(server.addr, ca.client_config())
        .await
        .expect("handshake");
    struct Case {
        name: &'static str,
        bytes: usize,
        write: usize,
        read: usize,
    }
    let cases = [
        Case {
            name: "full 16 KiB records, 700-byte reads keep each record's rest",
            bytes: 100_000,
            write: 64 << 10,
            read: 700,
        },
        Case {
            name: "many small records, one large read takes several",
            bytes: 50_000,
            write: 1000,
            read: 64 << 10,
        },
        Case {
            name: "records and reads of awkward sizes",
            bytes: 77_777,
            write: 3001,
            read: 1999,
        },
    ];
    for case in cases {
        let body = fetch(&mut stream, case.bytes, case.write, case.read).await;
        assert!(body == pattern(case.bytes), "{}", case.name);
    }
}

#[tokio::test]
async fn records_split_across_socket_reads_are_reassembled() {
    let ca = Ca::new("test CA");
    let server = Server::trusted_by(&ca).await;
    // 333 is odd and below a header-plus-payload, so record headers and bodies are cut everywhere.
    let (relay, _relay_task) = dribbling_relay(server.addr, 333).await;
    let mut stream = connect_to(relay, ca.client_config())
        .await
        .expect("handshake in pieces");
    let body = fetch(&mut stream, 40_000, 16 << 10, 8192).await;
    assert!(body == pattern(40_000), "body reassembled in order");
    assert_eq!(stream.buffer_capacities(), [0, 0, 0]);
}

#[tokio::test]
async fn several_exchanges_share_one_connection_and_leave_no_buffer_between_them() {
    let ca = Ca::new("test CA");
    let mut server = Server::trusted_by(&ca).await;
    let mut stream = connect_to(server.addr, ca.client_config())
        .await
        .expect("handshake");
    for (round, bytes) in [10, 20_000, 100_000, 1].into_iter().enumerate() {
        let body = fetch(&mut stream, bytes, 16 << 10, 4096).await;
        assert!(body == pattern(bytes), "exchange {round}");
        assert_eq!(
            stream.buffer_capacities(),
            [0, 0, 0],
            "incoming, plaintext and outgoing buffers released after exchange {round}"
        );
    }
    drop(stream);
    assert_eq!(
        server.next_end().await,
        End::ClientVanished,
        "one connection served every exchange"
    );
}

#[tokio::test]
async fn a_tls12_server_is_served_the_same_way() {
    let ca = Ca::new("test CA");
    let config = ca.server_config(LOCALHOST, &[&rustls::version::TLS12]);
    let server = Server::start(config).await;
    let mut stream = connect_to(server.addr, ca.client_config())
        .await
        .expect("TLS 1.2 handshake");
    for bytes in [30_000, 5] {
        assert!(fetch(&mut stream, bytes, 10_000, 4096).await == pattern(bytes));
        assert_eq!(stream.buffer_capacities(), [0, 0, 0]);
    }
}

#[tokio::test]
async fn a_write_larger_than_one_record_is_sent_whole() {
    let ca = Ca::new("test CA");
    let server = Server::trusted_by(&ca).await;
    let mut stream = connect_to(server.addr, ca.client_config())
        .await
        .expect("handshake");
    let bytes = 40_000;
    stream
        .write_all(format!("RECV {bytes}\n").as_bytes())
        .await
        .expect("write head");
    stream.write_all(&pattern(bytes)).await.expect("write body");
    stream.flush().await.expect("flush");
    let mut answer = [0; 3];
    stream.read_exact(&mut answer).await.expect("answer");
    assert_eq!(&answer, b"OK\n");
    assert_eq!(stream.buffer_capacities(), [0, 0, 0]);
}

#[tokio::test]
async fn the_servers_close_notify_reads_as_end_of_stream() {
    let ca = Ca::new("test CA");
    let mut server = Server::trusted_by(&ca).await;
    let mut stream = connect_to(server.addr, ca.client_config())
        .await
        .expect("handshake");
    assert!(fetch(&mut stream, 5000, 5000, 4096).await == pattern(5000));
    stream.write_all(b"CLOSE\n").await.expect("write");
    stream.flush().await.expect("flush");
    let mut buf = [0; 16];
    assert_eq!(stream.read(&mut buf).await.expect("clean EOF"), 0);
    assert_eq!(stream.read(&mut buf).await.expect("EOF again"), 0);
    assert_eq!(server.next_end().await, End::ServerClosed);
}

#[tokio::test]
async fn a_tcp_close_without_close_notify_is_an_unexpected_eof_as_with_tokio_rustls() {
    let ca = Ca::new("test CA");
    let server = Server::trusted_by(&ca).await;
    let mut stream = connect_to(server.addr, ca.client_config())
        .await
        .expect("handshake");
    stream.write_all(b"DROP\n").await.expect("write");
    stream.flush().await.expect("flush");
    let mut buf = [0; 16];
    let ours = stream.read(&mut buf).await.expect_err("unclean close");
    assert_eq!(ours.kind(), io::ErrorKind::UnexpectedEof);
    assert!(ours.to_string().contains("close_notify"), "{ours}");
    assert!(stream.read(&mut buf).await.is_err(), "and so it stays");

    let tcp = TcpStream::connect(server.addr).await.expect("TCP connect");
    let name = ServerName::try_from("127.0.0.1").expect("IP server name");
    let mut theirs = tokio_rustls::TlsConnector::from(ca.client_config())
        .connect(name, tcp)
        .await
        .expect("handshake");
    theirs.write_all(b"DROP\n").await.expect("write");
    theirs.flush().await.expect("flush");
    let theirs = theirs.read(&mut buf).await.expect_err("unclean close");
    assert_eq!(ours.kind(), theirs.kind());
    assert_eq!(ours.to_string(), theirs.to_string());
}

#[tokio::test]
async fn shutdown_sends_close_notify() {
    let ca = Ca::new("test CA");
    let mut server = Server::trusted_by(&ca).await;
    let mut stream = connect_to(server.addr, ca.client_config())
        .await
        .expect("handshake");
    assert!(fetch(&mut stream, 100, 100, 100).await == pattern(100));
    stream.shutdown().await.expect("shutdown");
    assert_eq!(server.next_end().await, End::ClientCloseNotify);
    assert!(
        stream.write_all(b"more").await.is_err(),
        "no writes after shutdown"
    );
}

#[tokio::test]
async fn handshake_failures_read_as_they_did_with_tokio_rustls() {
    struct Case {
        name: &'static str,
        server: Arc<ServerConfig>,
        want: &'static str,
    }
    let ca = Ca::new("kubelet CA");
    let other = Ca::new("some other CA");
    let cases = [
        Case {
            name: "certificate from another CA",
            server: other.server_config(LOCALHOST, rustls::DEFAULT_VERSIONS),
            want: "UnknownIssuer",
        },
        Case {
            name: "certificate for another address",
            server: ca.server_config(IpAddr::from([127, 0, 0, 99]), rustls::DEFAULT_VERSIONS),
            want: "127.0.0.99",
        },
    ];
    for case in cases {
        let mut server = Server::start(case.server).await;
        let ours = connect_to(server.addr, ca.client_config())
            .await
            .expect_err(case.name);
        let tcp = TcpStream::connect(server.addr).await.expect("TCP connect");
        let name = ServerName::try_from("127.0.0.1").expect("IP server name");
        let theirs = tokio_rustls::TlsConnector::from(ca.client_config())
            .connect(name, tcp)
            .await
            .expect_err(case.name);
        assert_eq!(ours.kind(), io::ErrorKind::InvalidData, "{}", case.name);
        assert_eq!(ours.kind(), theirs.kind(), "{}", case.name);
        assert_eq!(ours.to_string(), theirs.to_string(), "{}", case.name);
        assert!(
            ours.to_string().contains(case.want),
            "{}: {ours}",
            case.name
        );
        let inner = ours
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>());
        assert!(
            matches!(inner, Some(rustls::Error::InvalidCertificate(_))),
            "{}: the rustls error is kept: {ours:?}",
            case.name
        );
        assert_eq!(
            server.next_end().await,
            End::HandshakeFailed,
            "{}",
            case.name
        );
    }
}

#[tokio::test]
async fn session_tickets_after_the_handshake_are_processed_and_let_the_next_connection_resume() {
    let ca = Ca::new("test CA");
    let server = Server::trusted_by(&ca).await;
    let config = ca.client_config();
    let mut first = connect_to(server.addr, config.clone())
        .await
        .expect("handshake");
    // TLS 1.3 tickets follow the server's handshake: the first read processes them before the response.
    assert!(fetch(&mut first, 10, 10, 10).await == pattern(10));
    assert_eq!(first.conn.handshake_kind(), Some(HandshakeKind::Full));
    let mut second = connect_to(server.addr, config).await.expect("handshake");
    assert_eq!(second.conn.handshake_kind(), Some(HandshakeKind::Resumed));
    assert!(fetch(&mut second, 10, 10, 10).await == pattern(10));
}
