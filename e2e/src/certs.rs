//! Certificates for one fake cluster: a cluster CA, a separate front-proxy CA, and the serving and client
//! certificates the fakes and the server under test need, written as PEM into a temporary directory.
//!
//! Owns key generation and file layout only; it must not build TLS configurations (see [`crate::tls`]) or know
//! about any server.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Errors while generating or writing certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters or failed to sign.
    #[error("generating certificate {name}: {source}")]
    Generate {
        /// Which certificate was being generated.
        name: String,
        /// The rcgen error.
        #[source]
        source: rcgen::Error,
    },
    /// Writing a PEM file or creating the directory failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Which certificate authority signs a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// The cluster CA (`client-ca-file`): user certificates such as an admin's.
    Cluster,
    /// The front-proxy CA (`requestheader-client-ca-file`): the aggregator's `front-proxy-client` certificate.
    FrontProxy,
}

/// A certificate with its private key, both in memory and on disk as PEM.
#[derive(Debug)]
pub struct CertifiedKey {
    /// PEM file holding the certificate.
    pub cert_path: PathBuf,
    /// PEM file holding the PKCS#8 private key.
    pub key_path: PathBuf,
    /// The certificate as PEM text.
    pub cert_pem: String,
    /// The certificate as DER.
    pub cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

/// A certificate authority: its certificate on disk and the issuer used to sign leaves.
struct Authority {
    cert_path: PathBuf,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// All certificates of one test cluster, living in a temporary directory removed on drop.
pub struct Pki {
    dir: tempfile::TempDir,
    cluster_ca: Authority,
    front_proxy_ca: Authority,
}

/// Common name of the aggregator's client certificate, the value of `requestheader-allowed-names` in real
/// clusters (kubeadm's default).
pub const FRONT_PROXY_CLIENT_CN: &str = "front-proxy-client";

// === impl Pki ===

impl Pki {
    /// Creates a fresh temporary directory with a cluster CA (`ca.crt`) and a front-proxy CA
    /// (`front-proxy-ca.crt`).
    ///
    /// # Errors
    /// [`CertError`] when key generation, signing or writing fails.
    pub fn new() -> Result<Self, CertError> {
        let dir = tempfile::Builder::new()
            .prefix("e2e-pki-")
            .tempdir()
            .map_err(|source| CertError::Write {
                path: std::env::temp_dir(),
                source,
            })?;
        let cluster_ca = Authority::generate(dir.path(), "ca", "e2e-cluster-ca")?;
        let front_proxy_ca =
            Authority::generate(dir.path(), "front-proxy-ca", "e2e-front-proxy-ca")?;
        Ok(Self {
            dir,
            cluster_ca,
            front_proxy_ca,
        })
    }

    /// The directory holding every PEM file; removed when the `Pki` is dropped.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Path of the cluster CA certificate (`client-ca-file`, kubeconfig `certificate-authority`).
    pub fn cluster_ca_path(&self) -> &Path {
        &self.cluster_ca.cert_path
    }

    /// PEM text of the cluster CA certificate.
    pub fn cluster_ca_pem(&self) -> &str {
        &self.cluster_ca.cert_pem
    }

    /// DER of the cluster CA certificate, for building trust stores.
    pub fn cluster_ca_der(&self) -> &CertificateDer<'static> {
        &self.cluster_ca.cert_der
    }

    /// Path of the front-proxy CA certificate (`requestheader-client-ca-file`).
    pub fn front_proxy_ca_path(&self) -> &Path {
        &self.front_proxy_ca.cert_path
    }

    /// PEM text of the front-proxy CA certificate.
    pub fn front_proxy_ca_pem(&self) -> &str {
        &self.front_proxy_ca.cert_pem
    }

    /// DER of the front-proxy CA certificate.
    pub fn front_proxy_ca_der(&self) -> &CertificateDer<'static> {
        &self.front_proxy_ca.cert_der
    }

    /// Issues a serving certificate signed by the cluster CA, written as `<file_stem>.crt`/`.key`.
    ///
    /// Each entry of `sans` that parses as an IP address becomes an IP SAN, the rest DNS SANs; the first DNS name
    /// (or `file_stem`) is the common name.
    ///
    /// # Errors
    /// [`CertError`] when signing or writing fails.
    pub fn issue_server(
        &self,
        file_stem: &str,
        sans: &[String],
    ) -> Result<CertifiedKey, CertError> {
        let mut params =
            CertificateParams::new(sans.to_vec()).map_err(|source| generate(file_stem, source))?;
        let cn = sans
            .iter()
            .find(|s| s.parse::<IpAddr>().is_err())
            .map_or(file_stem, String::as_str);
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        self.sign(file_stem, params, &self.cluster_ca)
    }

    /// Issues a client certificate with common name `user` and (at most one) organisation `group`, the way
    /// Kubernetes maps certificates to users and groups.
    ///
    /// # Errors
    /// [`CertError`] when signing or writing fails.
    pub fn issue_client(
        &self,
        file_stem: &str,
        user: &str,
        group: Option<&str>,
        signer: Signer,
    ) -> Result<CertifiedKey, CertError> {
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(|source| generate(file_stem, source))?;
        params.distinguished_name.push(DnType::CommonName, user);
        if let Some(group) = group {
            params
                .distinguished_name
                .push(DnType::OrganizationName, group);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let authority = match signer {
            Signer::Cluster => &self.cluster_ca,
            Signer::FrontProxy => &self.front_proxy_ca,
        };
        self.sign(file_stem, params, authority)
    }

    fn sign(
        &self,
        file_stem: &str,
        params: CertificateParams,
        authority: &Authority,
    ) -> Result<CertifiedKey, CertError> {
        let key = KeyPair::generate().map_err(|source| generate(file_stem, source))?;
        let cert = params
            .signed_by(&key, &authority.issuer)
            .map_err(|source| generate(file_stem, source))?;
        let cert_path = self.dir.path().join(format!("{file_stem}.crt"));
        let key_path = self.dir.path().join(format!("{file_stem}.key"));
        write(&cert_path, &cert.pem())?;
        write(&key_path, &key.serialize_pem())?;
        Ok(CertifiedKey {
            cert_path,
            key_path,
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        })
    }
}

// === impl CertifiedKey ===

impl CertifiedKey {
    /// The private key as DER, for rustls.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

// === impl Authority ===

impl Authority {
    fn generate(dir: &Path, file_stem: &str, cn: &str) -> Result<Self, CertError> {
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(|source| generate(file_stem, source))?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(|source| generate(file_stem, source))?;
        let cert = params
            .self_signed(&key)
            .map_err(|source| generate(file_stem, source))?;
        let cert_path = dir.join(format!("{file_stem}.crt"));
        write(&cert_path, &cert.pem())?;
        write(&dir.join(format!("{file_stem}.key")), &key.serialize_pem())?;
        Ok(Self {
            cert_path,
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }
}

fn generate(name: &str, source: rcgen::Error) -> CertError {
    CertError::Generate {
        name: name.to_owned(),
        source,
    }
}

fn write(path: &Path, contents: &str) -> Result<(), CertError> {
    fs::write(path, contents).map_err(|source| CertError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    #[test]
    fn server_certificate_carries_ip_and_dns_sans_and_is_signed_by_the_cluster_ca() {
        let pki = Pki::new().unwrap();
        let cert = pki
            .issue_server(
                "apiserver",
                &["localhost".into(), "127.0.0.1".into(), "127.1.0.1".into()],
            )
            .unwrap();
        let (_, parsed) = X509Certificate::from_der(&cert.cert_der).unwrap();
        let san = parsed.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| format!("{n}"))
            .collect();
        assert!(names.iter().any(|n| n.contains("localhost")), "{names:?}");
        assert!(
            names.iter().any(|n| n.contains("7f:01:00:01")),
            "127.1.0.1 as an IP SAN: {names:?}"
        );
        assert!(parsed.issuer().to_string().contains("e2e-cluster-ca"));
        assert!(cert.cert_path.exists() && cert.key_path.exists());
    }

    #[test]
    fn front_proxy_client_certificate_is_signed_by_the_front_proxy_ca() {
        let pki = Pki::new().unwrap();
        let cert = pki
            .issue_client(
                "front-proxy-client",
                FRONT_PROXY_CLIENT_CN,
                None,
                Signer::FrontProxy,
            )
            .unwrap();
        let (_, parsed) = X509Certificate::from_der(&cert.cert_der).unwrap();
        assert!(
            parsed
                .subject()
                .to_string()
                .contains("CN=front-proxy-client")
        );
        assert!(parsed.issuer().to_string().contains("e2e-front-proxy-ca"));
    }
}
