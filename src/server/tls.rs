//! TLS for the HTTPS listener: the rustls server configuration, the serving certificate (files reloaded when they
//! change on disk, or a self-signed pair kept in `--cert-dir`) and the client-certificate policy.
//!
//! Client certificates are requested but not required, and any chain is accepted at the handshake as long as the
//! client proves it holds the key (the handshake signature is verified). Which CA a chain must chain to depends on
//! how it is used (front-proxy CA vs client CA), so that check belongs to the `auth` module, which receives the
//! chain per request. This module must not authenticate users or know about HTTP.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme, SupportedCipherSuite,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio::time::Instant;

use crate::config::{CertKeyPair, ServingCert, ServingConfig, TlsVersion};

/// How often, at most, the certificate files are checked for changes (one `stat` per file, on a handshake).
///
/// Kubernetes updates mounted Secrets within about a minute; a few seconds of extra delay is invisible, and it
/// keeps a handshake storm from turning into a `stat` storm.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Validity of a generated self-signed serving certificate (the apiserver's is one year too).
const GENERATED_VALIDITY_DAYS: i64 = 365;

/// File names inside `--cert-dir`, as the apiserver names them.
const CERT_DIR_CERT: &str = "apiserver.crt";
const CERT_DIR_KEY: &str = "apiserver.key";

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A certificate or key file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A certificate file holds no PEM certificate.
    #[error("{path} holds no PEM certificate")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A key file holds no PEM private key.
    #[error("{path} holds no PEM private key: {reason}")]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
        /// The parser's explanation.
        reason: String,
    },
    /// The key is unsupported or does not match the certificate.
    #[error("certificate {cert} and key {key} cannot be used together: {source}")]
    KeyMismatch {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// Generating a self-signed certificate failed.
    #[error("cannot generate a self-signed serving certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// Writing the generated certificate into `--cert-dir` failed.
    #[error(
        "cannot write the generated serving certificate to {path} (is --cert-dir writable?): {source}"
    )]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// rustls refused the protocol versions / cipher suites combination.
    #[error("invalid TLS settings: {0}")]
    Settings(#[source] rustls::Error),
}

/// The serving certificate, reloaded from its files when they change.
///
/// Each handshake asks [`ResolvesServerCert::resolve`]; at most every [`RELOAD_CHECK_INTERVAL`] that call compares
/// the files' (mtime, size, inode) with what was loaded and, on a change, loads the new pair and swaps it in.
/// Existing connections keep their session; only new handshakes see the new certificate. A pair that fails to load
/// (a half-written update) is logged and the previous certificate stays in use until the files change again.
#[derive(Debug)]
pub struct CertResolver {
    files: CertKeyPair,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    reload: Mutex<ReloadState>,
}

#[derive(Debug)]
struct ReloadState {
    checked_at: Instant,
    seen: Fingerprint,
}

/// What identifies a version of the two files without reading them.
type Fingerprint = [Option<(SystemTime, u64, u64)>; 2];

/// Accepts any client certificate chain whose holder proves possession of the key; see the module docs.
#[derive(Debug)]
struct AnyClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

/// Builds the server configuration and the resolver it uses (exposed for tests and logging).
///
/// # Errors
/// When the certificate cannot be loaded or generated, or the TLS settings are inconsistent.
pub fn server_config(
    serving: &ServingConfig,
) -> Result<(Arc<ServerConfig>, Arc<CertResolver>), Error> {
    let provider = Arc::new(provider(&serving.cipher_suites));
    let files = match &serving.cert {
        ServingCert::Files(pair) => pair.clone(),
        ServingCert::CertDir(dir) => ensure_cert_dir_pair(dir)?,
    };
    let resolver = Arc::new(CertResolver::load(files, provider.clone())?);
    let versions: &[&rustls::SupportedProtocolVersion] = match serving.min_tls_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let verifier = Arc::new(AnyClientCert {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(Error::Settings)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(config), resolver))
}

/// The ring provider restricted to the configured suites.
///
/// As in Go, the named list governs TLS 1.2; TLS 1.3 uses the provider's suites unless the list names some.
fn provider(named: &[SupportedCipherSuite]) -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    if named.is_empty() {
        return provider;
    }
    let is13 = |s: &SupportedCipherSuite| matches!(s, SupportedCipherSuite::Tls13(_));
    let named13: Vec<_> = named.iter().copied().filter(is13).collect();
    let tls13 = if named13.is_empty() {
        provider
            .cipher_suites
            .iter()
            .copied()
            .filter(is13)
            .collect()
    } else {
        named13
    };
    let mut suites: Vec<_> = named.iter().copied().filter(|s| !is13(s)).collect();
    suites.extend(tls13);
    provider.cipher_suites = suites;
    provider
}

/// `<dir>/apiserver.crt|.key`: used when both exist, otherwise generated and written there.
fn ensure_cert_dir_pair(dir: &Path) -> Result<CertKeyPair, Error> {
    let pair = CertKeyPair {
        cert: dir.join(CERT_DIR_CERT),
        key: dir.join(CERT_DIR_KEY),
    };
    if pair.cert.exists() && pair.key.exists() {
        tracing::info!(cert = %pair.cert.display(), "using the serving certificate found in --cert-dir");
        return Ok(pair);
    }
    let host = hostname();
    let (cert_pem, key_pem) = generate_self_signed(&host)?;
    std::fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    write_file(&pair.key, key_pem.as_bytes(), 0o600)?;
    write_file(&pair.cert, cert_pem.as_bytes(), 0o644)?;
    tracing::info!(cert = %pair.cert.display(), host = %host, "generated a self-signed serving certificate");
    Ok(pair)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    write().map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// The pod's host name (`HOSTNAME`, else `/etc/hostname`), used as a SAN of the generated certificate.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A self-signed CA and a serving certificate it signed, for `localhost`, `127.0.0.1` and `host`, valid about a
/// year. Returns (certificate chain PEM: serving cert then CA, key PEM), like the apiserver's `apiserver.crt`.
///
/// # Errors
/// When rcgen fails (key generation or an invalid host name).
pub fn generate_self_signed(host: &str) -> Result<(String, String), Error> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let today = jiff::Zoned::now().date();
    let ymd = |d: jiff::civil::Date| {
        rcgen::date_time_ymd(
            i32::from(d.year()),
            d.month().unsigned_abs(),
            d.day().unsigned_abs(),
        )
    };
    let not_before = ymd(today.yesterday().unwrap_or(today));
    let not_after = ymd(today
        .checked_add(jiff::Span::new().days(GENERATED_VALIDITY_DAYS))
        .unwrap_or(today));
    let stamp = jiff::Timestamp::now().as_second();

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{host}-ca@{stamp}"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::CrlSign,
    ];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    if !names.iter().any(|n| n == host) {
        names.push(host.to_owned());
    }
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{host}@{stamp}"));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = not_before;
    params.not_after = not_after;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    Ok((format!("{}{}", cert.pem(), ca.pem()), key.serialize_pem()))
}

// === impl CertResolver ===

impl CertResolver {
    /// Loads `files` now (errors are fatal at startup; later reload errors only log).
    ///
    /// # Errors
    /// When the files cannot be read or parsed, or the key does not match.
    pub fn load(files: CertKeyPair, provider: Arc<CryptoProvider>) -> Result<Self, Error> {
        let seen = fingerprint(&files);
        let key = load_pair(&files, &provider)?;
        Ok(CertResolver {
            files,
            provider,
            current: ArcSwap::from_pointee(key),
            reload: Mutex::new(ReloadState {
                checked_at: Instant::now(),
                seen,
            }),
        })
    }

    /// The certificate chain (leaf first) currently served.
    pub fn current_chain(&self) -> Vec<CertificateDer<'static>> {
        self.current.load().cert.clone()
    }

    /// Reloads the pair if the files changed since the last load and the check interval has passed.
    pub(crate) fn maybe_reload(&self) {
        // A handshake that finds another one checking does not wait: it serves the current certificate.
        let Ok(mut state) = self.reload.try_lock() else {
            return;
        };
        if state.checked_at.elapsed() < RELOAD_CHECK_INTERVAL {
            return;
        }
        state.checked_at = Instant::now();
        let now_seen = fingerprint(&self.files);
        if now_seen == state.seen {
            return;
        }
        state.seen = now_seen;
        match load_pair(&self.files, &self.provider) {
            Ok(key) => {
                self.current.store(Arc::new(key));
                tracing::info!(cert = %self.files.cert.display(), "reloaded the serving certificate");
            }
            Err(error) => {
                tracing::warn!(%error, "cannot reload the serving certificate; keeping the previous one");
            }
        }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.maybe_reload();
        Some(self.current.load_full())
    }
}

fn fingerprint(files: &CertKeyPair) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    let stat = |p: &Path| {
        std::fs::metadata(p).ok().map(|m| {
            (
                m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                m.len(),
                m.ino(),
            )
        })
    };
    [stat(&files.cert), stat(&files.key)]
}

fn load_pair(files: &CertKeyPair, provider: &CryptoProvider) -> Result<CertifiedKey, Error> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let cert_pem = read(&files.cert)?;
    let key_pem = read(&files.key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| Error::NoCertificate {
            path: files.cert.clone(),
        })?;
    if chain.is_empty() {
        return Err(Error::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| Error::NoPrivateKey {
        path: files.key.clone(),
        reason: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| Error::KeyMismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    })
}

// === impl AnyClientCert ===

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Chain trust is decided per request by `auth`, against the CA that matches the use of the certificate.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly on broken fixtures
mod tests {
    use super::*;

    fn serving(
        cert: ServingCert,
        min: TlsVersion,
        suites: Vec<SupportedCipherSuite>,
    ) -> ServingConfig {
        ServingConfig {
            bind: "127.0.0.1:0".parse().expect("addr"),
            cert,
            min_tls_version: min,
            cipher_suites: suites,
        }
    }

    #[test]
    fn a_missing_cert_dir_pair_is_generated_and_then_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let certs = dir.path().join("nested");
        let config = serving(
            ServingCert::CertDir(certs.clone()),
            TlsVersion::Tls12,
            vec![],
        );
        let (_, first) = server_config(&config).expect("generated");
        let chain = first.current_chain();
        assert_eq!(chain.len(), 2, "serving certificate followed by its CA");
        let (_, second) = server_config(&config).expect("reused");
        assert_eq!(
            second.current_chain(),
            chain,
            "an existing pair is reused, not regenerated"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(certs.join(CERT_DIR_KEY))
            .expect("key")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "the key is private");
    }

    #[test]
    fn the_generated_certificate_names_localhost_and_the_host() {
        let (cert_pem, _) = generate_self_signed("metrics-server-abc").expect("generated");
        let der = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .next()
            .expect("one cert")
            .expect("PEM");
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("DER");
        let san = cert
            .subject_alternative_name()
            .expect("ext")
            .expect("SAN present");
        let names = format!("{:?}", san.value.general_names);
        for want in ["localhost", "metrics-server-abc", "[127, 0, 0, 1]"] {
            assert!(names.contains(want), "{want} in {names}");
        }
        let days = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp())
            / 86_400;
        assert!(
            (365..=367).contains(&days),
            "about one year, got {days} days"
        );
    }

    #[test]
    fn a_mismatched_key_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert_a, _) = generate_self_signed("a").expect("a");
        let (_, key_b) = generate_self_signed("b").expect("b");
        let pair = CertKeyPair {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        };
        std::fs::write(&pair.cert, cert_a).expect("write");
        std::fs::write(&pair.key, key_b).expect("write");
        let err = server_config(&serving(
            ServingCert::Files(pair),
            TlsVersion::Tls12,
            vec![],
        ))
        .expect_err("mismatch");
        assert!(matches!(err, Error::KeyMismatch { .. }), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_broken_replacement_keeps_the_previous_certificate_until_a_good_one_arrives() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pair = CertKeyPair {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        };
        let write = |host: &str| {
            let (cert, key) = generate_self_signed(host).expect("generate");
            std::fs::write(&pair.key, key).expect("write key");
            std::fs::write(&pair.cert, &cert).expect("write cert");
            CertificateDer::pem_slice_iter(cert.as_bytes())
                .next()
                .expect("cert")
                .expect("PEM")
        };
        let first = write("first");
        let resolver = CertResolver::load(
            pair.clone(),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .expect("load");
        let leaf = |r: &CertResolver| r.current_chain()[0].clone();

        std::fs::write(
            &pair.cert,
            "not a certificate, and longer than before to change the size",
        )
        .expect("write");
        tokio::time::advance(RELOAD_CHECK_INTERVAL + Duration::from_millis(1)).await;
        resolver.maybe_reload();
        assert_eq!(
            leaf(&resolver),
            first,
            "a broken file keeps the previous certificate"
        );

        let second = write("second");
        resolver.maybe_reload();
        assert_eq!(
            leaf(&resolver),
            first,
            "not checked again before the interval has passed"
        );
        tokio::time::advance(RELOAD_CHECK_INTERVAL + Duration::from_millis(1)).await;
        resolver.maybe_reload();
        assert_eq!(leaf(&resolver), second, "a good replacement is picked up");
    }

    #[test]
    fn named_suites_restrict_tls12_and_keep_tls13_defaults() {
        let only =
            crate::config::cipher_suite("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256").expect("known");
        let p = provider(&[only]);
        let tls12 = p
            .cipher_suites
            .iter()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls12(_)))
            .count();
        let tls13 = p
            .cipher_suites
            .iter()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
            .count();
        assert_eq!((tls12, tls13), (1, 3));
    }
}
