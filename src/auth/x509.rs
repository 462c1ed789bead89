//! Client-certificate chain verification against one CA bundle, and the subject (CN, O) of a verified leaf.
//!
//! The TLS layer accepts any client chain and only proves key possession, so every trust decision about a client
//! certificate is made here: a chain is trusted by a [`CaBundle`] only if it builds a path to one of its anchors,
//! every certificate is within its validity period and the leaf allows client authentication (extended key usage
//! `clientAuth`, or no EKU extension at all, as Go's verifier treats it). This module must not read headers or
//! decide who the user is beyond the certificate's own subject.

use std::fmt;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, KeyUsage};

/// A set of trusted CA certificates, parsed once and shared.
#[derive(Clone)]
pub struct CaBundle {
    anchors: Vec<TrustAnchor<'static>>,
    /// The PEM bytes this bundle was parsed from, so a refresh can tell whether anything changed.
    pem: Vec<u8>,
}

/// The identity carried by a verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The subject common name (empty when absent); the last CN wins, as in Go's `pkix.Name`.
    pub common_name: String,
    /// The subject organization values, in certificate order.
    pub organizations: Vec<String>,
}

/// Why a CA bundle could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The PEM text holds no `CERTIFICATE` block.
    #[error("no CERTIFICATE block found")]
    Empty,
    /// A `CERTIFICATE` block is not valid PEM.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// A certificate cannot serve as a trust anchor.
    #[error("certificate {index} is not a usable CA certificate: {reason}")]
    Anchor {
        /// Position of the certificate in the bundle, from 0.
        index: usize,
        /// What webpki said.
        reason: String,
    },
}

/// Why a client chain is not trusted by a bundle.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The chain is empty (no certificate was presented).
    #[error("no client certificate")]
    NoCertificate,
    /// Chain building or validity checks failed (unknown authority, expired, wrong usage, bad signature).
    #[error("{0}")]
    Chain(webpki::Error),
    /// The verified leaf's subject could not be parsed.
    #[error("unparseable certificate subject: {0}")]
    Subject(String),
}

// === impl CaBundle ===

impl CaBundle {
    /// Parses a PEM bundle of one or more CA certificates (other PEM block types are skipped).
    ///
    /// # Errors
    /// [`BundleError`] when the text holds no certificate, a block is malformed or a certificate cannot be an anchor.
    pub fn from_pem(pem: &[u8]) -> Result<Self, BundleError> {
        let mut anchors = Vec::new();
        for (index, der) in CertificateDer::pem_slice_iter(pem).enumerate() {
            let der = der.map_err(|error| BundleError::Pem(error.to_string()))?;
            let anchor =
                webpki::anchor_from_trusted_cert(&der).map_err(|error| BundleError::Anchor {
                    index,
                    reason: error.to_string(),
                })?;
            anchors.push(anchor.to_owned());
        }
        if anchors.is_empty() {
            return Err(BundleError::Empty);
        }
        Ok(CaBundle {
            anchors,
            pem: pem.to_vec(),
        })
    }

    /// Number of trusted CA certificates.
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// Whether the bundle is empty (never true for a bundle built by [`CaBundle::from_pem`]).
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Whether this bundle was parsed from exactly `pem`.
    pub fn same_pem(&self, pem: &[u8]) -> bool {
        self.pem == pem
    }

    /// Whether both bundles were parsed from the same PEM text.
    pub fn same_as(&self, other: &CaBundle) -> bool {
        self.pem == other.pem
    }

    /// Verifies a client chain (leaf first, then intermediates, DER) at time `now` and returns the leaf's subject.
    ///
    /// # Errors
    /// [`VerifyError`] when the chain does not lead to one of this bundle's anchors, a certificate is outside its
    /// validity period, the leaf is not allowed for client authentication or its subject cannot be parsed.
    pub fn verify_client(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<Subject, VerifyError> {
        let (leaf, intermediates) = chain.split_first().ok_or(VerifyError::NoCertificate)?;
        let end_entity = EndEntityCert::try_from(leaf).map_err(VerifyError::Chain)?;
        end_entity
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &self.anchors,
                intermediates,
                now,
                KeyUsage::client_auth(),
                None,
                None,
            )
            .map_err(VerifyError::Chain)?;
        subject(leaf)
    }
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaBundle")
            .field("certificates", &self.anchors.len())
            .finish()
    }
}

/// The subject CN and O values of a DER certificate.
///
/// # Errors
/// [`VerifyError::Subject`] when the certificate or a CN/O value cannot be parsed as a string.
pub fn subject(der: &CertificateDer<'_>) -> Result<Subject, VerifyError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|error| VerifyError::Subject(error.to_string()))?;
    let name = cert.subject();
    let text = |attr: &x509_parser::x509::AttributeTypeAndValue<'_>| {
        attr.as_str()
            .map(str::to_owned)
            .map_err(|error| VerifyError::Subject(error.to_string()))
    };
    let mut common_name = String::new();
    for attr in name.iter_common_name() {
        common_name = text(attr)?;
    }
    let organizations = name
        .iter_organization()
        .map(text)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Subject {
        common_name,
        organizations,
    })
}

/// The subject and issuer distinguished names of a DER certificate, for log messages about rejected certificates
/// (no verification is implied); `None` when it does not parse.
pub fn describe(der: &CertificateDer<'_>) -> Option<(String, String)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some((cert.subject().to_string(), cert.issuer().to_string()))
}
