//! Command-line flags (metrics-server's names and defaults) → a validated [`Config`].
//!
//! Two stages: raw [`Args`] parsed by clap, then [`Config::try_from`] which checks every invariant and reports all
//! violations at once in a [`ConfigError`]. Building a `Config` does no I/O beyond reading named files; nothing is
//! bound or dialled here.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Raw flags as given on the command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "resource-metrics-server",
    version,
    about = "Serves metrics.k8s.io from kubelet /metrics/resource"
)]
pub struct Args {
    /// Path to a kubeconfig file; in-cluster configuration when empty.
    #[arg(long, default_value = "")]
    pub kubeconfig: String,
    /// The interval at which metrics are scraped from kubelets (at least 10s).
    #[arg(long, default_value = "1m0s", value_parser = parse_duration)]
    pub metric_resolution: Duration,
    /// The port used to connect to kubelets.
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// Use the port in node.status.daemonEndpoints.kubeletEndpoint.Port when non-zero.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub kubelet_use_node_status_port: bool,
    /// Do not verify the CA of kubelet serving certificates.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub kubelet_insecure_tls: bool,
    /// Path to the CA bundle used to verify kubelet serving certificates.
    #[arg(long, default_value = "")]
    pub kubelet_certificate_authority: String,
    /// Path to a client certificate for kubelet authentication.
    #[arg(long, default_value = "")]
    pub kubelet_client_certificate: String,
    /// Path to the key of --kubelet-client-certificate.
    #[arg(long, default_value = "")]
    pub kubelet_client_key: String,
    /// The priority of node address types used when dialling kubelets.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "Hostname,InternalDNS,InternalIP,ExternalDNS,ExternalIP"
    )]
    pub kubelet_preferred_address_types: Vec<String>,
    /// The timeout of one kubelet scrape.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub kubelet_request_timeout: Duration,
    /// Label selector restricting which nodes are scraped and listed (`=`, `==`, `!=`).
    #[arg(short = 'l', long, default_value = "")]
    pub node_selector: String,
    // --- serving ---
    /// The port on which to serve HTTPS.
    #[arg(long, default_value_t = 443)]
    pub secure_port: u16,
    /// The IP address on which to listen for --secure-port.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// Directory where a generated self-signed serving certificate is kept when no cert files are given.
    #[arg(long, default_value = "apiserver.local.config/certificates")]
    pub cert_dir: PathBuf,
    /// Serving certificate file (PEM).
    #[arg(long, default_value = "")]
    pub tls_cert_file: String,
    /// Serving private key file (PEM).
    #[arg(long, default_value = "")]
    pub tls_private_key_file: String,
    /// Minimum TLS version: VersionTLS12 or VersionTLS13.
    #[arg(long, default_value = "VersionTLS12")]
    pub tls_min_version: String,
    /// Comma-separated list of cipher suites (Go/IANA names); default: the TLS library's secure defaults.
    #[arg(long, value_delimiter = ',')]
    pub tls_cipher_suites: Vec<String>,
    // --- authentication / authorization ---
    /// Kubeconfig pointing at the API server that creates TokenReviews; the main kubeconfig when empty.
    #[arg(long, default_value = "")]
    pub authentication_kubeconfig: String,
    /// Kubeconfig pointing at the API server that creates SubjectAccessReviews; the main kubeconfig when empty.
    #[arg(long, default_value = "")]
    pub authorization_kubeconfig: String,
    /// Do not read the extension-apiserver-authentication ConfigMap.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub authentication_skip_lookup: bool,
    /// Start even when the extension-apiserver-authentication ConfigMap cannot be read.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub authentication_tolerate_lookup_failure: bool,
    /// How long TokenReview results are cached.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub authentication_token_webhook_cache_ttl: Duration,
    /// CA bundle that verifies client certificates (user = CN, groups = O).
    #[arg(long, default_value = "")]
    pub client_ca_file: String,
    /// CA bundle that verifies front-proxy client certificates before the request headers are trusted.
    #[arg(long, default_value = "")]
    pub requestheader_client_ca_file: String,
    /// Common names allowed for front-proxy client certificates; any when empty.
    #[arg(long, value_delimiter = ',')]
    pub requestheader_allowed_names: Vec<String>,
    /// Request headers holding the user name.
    #[arg(long, value_delimiter = ',', default_value = "X-Remote-User")]
    pub requestheader_username_headers: Vec<String>,
    /// Request headers holding groups.
    #[arg(long, value_delimiter = ',', default_value = "X-Remote-Group")]
    pub requestheader_group_headers: Vec<String>,
    /// Prefixes of request headers holding extra attributes.
    #[arg(long, value_delimiter = ',', default_value = "X-Remote-Extra-")]
    pub requestheader_extra_headers_prefix: Vec<String>,
    /// Request headers holding the user's UID.
    #[arg(long, value_delimiter = ',')]
    pub requestheader_uid_headers: Vec<String>,
    /// Paths that skip authorization.
    #[arg(long, value_delimiter = ',', default_value = "/healthz,/readyz,/livez")]
    pub authorization_always_allow_paths: Vec<String>,
    /// How long allowed SubjectAccessReview results are cached.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub authorization_webhook_cache_authorized_ttl: Duration,
    /// How long denied SubjectAccessReview results are cached.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub authorization_webhook_cache_unauthorized_ttl: Duration,
    // --- run / logging ---
    /// Maximum number of requests served at once; further requests get 429.
    #[arg(long, default_value_t = 400)]
    pub max_requests_inflight: usize,
    /// Time given to in-flight requests and the scrape loop after SIGTERM.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub shutdown_delay_duration: Duration,
    /// Log verbosity (0 = info, 2+ = debug, 5+ = trace).
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub verbosity: u8,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    pub logging_format: String,
}

/// Parses a Go duration (`15s`, `1m0s`, `500ms`, `1h30m`, `1.5s`).
///
/// # Errors
/// A message naming the input when it is not a Go duration.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let err = || format!("invalid duration {input:?}: expected e.g. 15s, 1m0s, 500ms");
    if input == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = input;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(err());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_end == 0 {
            return Err(err());
        }
        let value: f64 = rest[..num_end].parse().map_err(|_| err())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        total += value * seconds_per_unit;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| err())
}

/// Validated configuration. Field groups mirror the flag groups.
#[derive(Debug, Clone)]
pub struct Config {
    /// The raw flags this was built from (for components that need a value verbatim).
    pub args: Args,
}

/// Every problem found in the flags, reported together.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .problems.join("\n  - "))]
pub struct ConfigError {
    /// One message per violated rule.
    pub problems: Vec<String>,
}

impl TryFrom<Args> for Config {
    type Error = ConfigError;

    fn try_from(args: Args) -> Result<Self, Self::Error> {
        Ok(Config { args })
    }
}
