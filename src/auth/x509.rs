//! Client-certificate chain verification against one CA bundle, and the subject (CN, O) of a verified leaf.
//!
//! The TLS layer accepts any client chain and only proves key possession, so every trust decision about a client
//! certificate is made here: a chain is trusted by a [`CaBundle`] only if it builds a path to one of its anchors,
//! every certificate is within its validity period and the leaf allows client authentication (extended key usage
//! `clientAuth`, or no EKU extension at all, as Go's verifier treats it). This module must not read headers or
//! decide who the user is beyond the certificate's own subject.
//!
//! Each bundle remembers the chains it verified (submodule `cache`), so a kept-alive connection's chain costs a
//! SHA-256 and a map lookup per request instead of path building and signature checks. The results are the same
//! as verifying every time: a result is reused only while `now` is within the validity period of every
//! certificate in the verified path (the only input that changes between requests), failures are never cached,
//! and a bundle parsed anew (a CA file or ConfigMap reload) starts with an empty cache, so a removed CA stops
//! being trusted at once.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::certificate::X509Certificate;

use cache::{ChainDigest, Validity, VerifiedChains};

mod cache;

/// A set of trusted CA certificates, parsed once and shared.
#[derive(Clone)]
pub struct CaBundle {
    anchors: Vec<TrustAnchor<'static>>,
    /// The PEM bytes this bundle was parsed from, so a refresh can tell whether anything changed.
    pem: Vec<u8>,
    /// Chains verified against `anchors`; shared by clones of this bundle, never by a bundle parsed again.
    verified: Arc<VerifiedChains>,
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
            verified: Arc::new(VerifiedChains::new()),
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
    /// A chain that verified before is not verified again while `now` is within the validity period of every
    /// certificate in its path; the result is the same either way.
    ///
    /// # Errors
    /// [`VerifyError`] when the chain does not lead to one of this bundle's anchors, a certificate is outside its
    /// validity period, the leaf is not allowed for client authentication or its subject cannot be parsed.
    pub fn verify_client(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<Subject, VerifyError> {
        if chain.is_empty() {
            return Err(VerifyError::NoCertificate);
        }
        let digest = ChainDigest::of(chain);
        if let Some(subject) = self.verified.get(&digest, now) {
            return Ok(subject);
        }
        let (subject, validity) = self.verify_uncached(chain, now)?;
        // A path whose dates x509-parser cannot read is still trusted (webpki read them); it is just not cached.
        if let Some(validity) = validity {
            self.verified.insert(digest, subject.clone(), validity, now);
        }
        Ok(subject)
    }

    /// Verifies with webpki: the leaf's subject and the validity span of the path that was built.
    fn verify_uncached(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(Subject, Option<Validity>), VerifyError> {
        let (leaf, intermediates) = chain.split_first().ok_or(VerifyError::NoCertificate)?;
        let end_entity = EndEntityCert::try_from(leaf).map_err(VerifyError::Chain)?;
        #[cfg(test)]
        self.verified.count_verification();
        let path = end_entity
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
        let leaf = parse(leaf)?;
        let subject = subject_of(&leaf)?;
        // webpki checks the dates of the leaf and of the intermediates it used (anchors have none), so those
        // bound how long the result holds; unused presented intermediates do not matter.
        let mut validity = validity_of(&leaf);
        for intermediate in path.intermediate_certificates() {
            let span = parse(&intermediate.der())
                .ok()
                .as_ref()
                .and_then(validity_of);
            validity = validity.zip(span).map(|(a, b)| a.intersect(b));
        }
        Ok((subject, validity))
    }

    /// Full verifications this bundle and its clones have run, successful or not (cache misses).
    #[cfg(test)]
    pub(crate) fn verifications(&self) -> usize {
        self.verified.verifications()
    }

    /// Chains this bundle and its clones have cached.
    #[cfg(test)]
    pub(crate) fn cached_chains(&self) -> usize {
        self.verified.len()
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
    subject_of(&parse(der)?)
}

/// Parses a DER certificate with x509-parser.
fn parse<'a>(der: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>, VerifyError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|error| VerifyError::Subject(error.to_string()))?;
    Ok(cert)
}

/// The subject CN and O values of a parsed certificate.
fn subject_of(cert: &X509Certificate<'_>) -> Result<Subject, VerifyError> {
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

/// A certificate's validity period in webpki's terms; `None` for dates before 1970, which webpki rejects.
fn validity_of(cert: &X509Certificate<'_>) -> Option<Validity> {
    let instant = |time: &x509_parser::time::ASN1Time| {
        let secs = u64::try_from(time.timestamp()).ok()?;
        Some(UnixTime::since_unix_epoch(Duration::from_secs(secs)))
    };
    let validity = cert.validity();
    Some(Validity {
        not_before: instant(&validity.not_before)?,
        not_after: instant(&validity.not_after)?,
    })
}

/// The subject and issuer distinguished names of a DER certificate, for log messages about rejected certificates
/// (no verification is implied); `None` when it does not parse.
pub fn describe(der: &CertificateDer<'_>) -> Option<(String, String)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some((cert.subject().to_string(), cert.issuer().to_string()))
}
