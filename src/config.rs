//! Command-line flags (metrics-server's names and defaults) → a validated [`Config`].
//!
//! Two stages: raw [`Args`] parsed by clap, then [`Config::try_from`] which checks every invariant and reports all
//! violations at once in a [`ConfigError`]. Building a `Config` does no I/O beyond reading named files; nothing is
//! bound or dialled here.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use rustls::SupportedCipherSuite;
use rustls::crypto::ring::cipher_suite as ring_suites;

#[cfg(test)]
mod tests;

/// Exit status for invalid flags or configuration (`EX_USAGE` from sysexits.h, as linkerd2-proxy uses).
///
/// `main` maps both a [`ConfigError`] and a clap usage error (`clap::Error::use_stderr()` is true) to this code;
/// `--help` and `--version` (`use_stderr()` false) are printed by `clap::Error::exit` with status 0.
pub const EX_USAGE: u8 = 64;

/// Default cap on a kubelet `/metrics/resource` body: 64 MiB.
///
/// A 110-pod kubelet answers about 125 KB, so even a node with thousands of containers stays far below this. The cap
/// exists so that a misbehaving or hostile endpoint cannot make the server buffer an unbounded body; it is a flag
/// because some fake-node setups (kwok) serve synthetic bodies of unusual size.
pub const DEFAULT_KUBELET_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// Default number of kubelet scrapes in flight at once: 64.
///
/// Scrapes are spread over the resolution, so at any moment only a small share of nodes is being scraped; 64 keeps
/// a slow-node pile-up (each waiting up to the request timeout) from exhausting sockets and memory.
pub const DEFAULT_KUBELET_MAX_CONCURRENCY: usize = 64;

/// Smallest accepted `--metric-resolution` (metrics-server's rule).
pub const MIN_RESOLUTION: Duration = Duration::from_secs(10);

/// Smallest drain period after shutdown starts, whatever `--shutdown-delay-duration` says.
///
/// The apiserver lets in-flight requests finish for up to its request timeout; our requests are answered from
/// memory in milliseconds, so 10 s is ample for them and short against the pod's 30 s termination grace period.
pub const MIN_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Flags metrics-server (through `k8s.io/apiserver` and `component-base`) accepts that mean nothing here.
///
/// They are accepted with a warning so that existing manifests keep starting. `true` = the flag takes a value
/// (`--flag value` or `--flag=value`); `false` = a boolean that only takes `--flag=value`. Entries ending in `*` are
/// prefixes; their value-taking default is overridden by the exact boolean entries listed before them.
const IGNORED_FLAGS: &[(&str, bool)] = &[
    ("profiling", false),
    ("contention-profiling", false),
    ("enable-priority-and-fairness", false),
    ("permit-port-sharing", false),
    ("permit-address-sharing", false),
    ("audit-log-compress", false),
    ("audit-log-truncate-enabled", false),
    ("audit-webhook-truncate-enabled", false),
    ("audit-log-batch-throttle-enable", false),
    ("audit-webhook-batch-throttle-enable", false),
    ("log-json-split-stream", false),
    ("log-text-split-stream", false),
    ("disable-http2-serving", false),
    ("audit-*", true),
    ("log-*", true),
    ("tls-sni-cert-key", true),
    ("http2-max-streams-per-connection", true),
    ("request-timeout", true),
    ("min-request-timeout", true),
    ("max-mutating-requests-inflight", true),
    ("vmodule", true),
    ("debug-socket-path", true),
    ("show-hidden-metrics-for-version", true),
    ("disabled-metrics", true),
    ("allow-metric-labels", true),
    ("allow-metric-labels-manifest", true),
    ("goaway-chance", true),
    ("livez-grace-period", true),
    ("shutdown-send-retry-after", false),
    ("shutdown-watch-termination-grace-period", true),
    ("strict-transport-security-directives", true),
    ("cors-allowed-origins", true),
    ("authorization-webhook-version", true),
    ("authentication-token-webhook-version", true),
    ("feature-gates", true),
];

/// Raw flags as given on the command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "resource-metrics-server",
    version,
    about = "Serves metrics.k8s.io from kubelet /metrics/resource",
    after_long_help = ignored_flags_help(),
    // pflag semantics: a flag given twice keeps its last value (Helm charts concatenate default and user args).
    args_override_self = true
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
    // --- additions over metrics-server ---
    /// Scrape kubelets over plain HTTP without credentials (metrics-server's deprecated flag; usually with
    /// --kubelet-port=10255).
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub deprecated_kubelet_completely_insecure: bool,
    /// How long a node's or container's last good window stays servable after failed scrapes; 0 means
    /// 2 × --metric-resolution + --kubelet-request-timeout.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub metric_staleness: Duration,
    /// Largest kubelet /metrics/resource body accepted, in bytes (larger bodies are a failed scrape).
    #[arg(long, default_value_t = DEFAULT_KUBELET_MAX_BODY_BYTES)]
    pub kubelet_max_body_bytes: u64,
    /// Maximum number of kubelet scrapes in flight at once.
    #[arg(long, default_value_t = DEFAULT_KUBELET_MAX_CONCURRENCY)]
    pub kubelet_max_concurrency: usize,
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

/// Parses `argv` (program name first) into [`Args`], first removing flags that metrics-server accepts but that mean
/// nothing here (see the list in this module). Returns the flags and one warning per removed flag, for the caller to
/// log once telemetry is up.
///
/// # Errors
/// clap's error for unknown flags or bad values, and for `--help` / `--version` (call `.exit()` on it).
pub fn parse_args<I, T>(argv: I) -> Result<(Args, Vec<String>), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let (kept, warnings) = strip_ignored_flags(argv.into_iter().map(Into::into).collect());
    Ok((Args::try_parse_from(kept)?, warnings))
}

/// Splits `argv` into the arguments for clap and warnings naming each ignored flag.
fn strip_ignored_flags(argv: Vec<OsString>) -> (Vec<OsString>, Vec<String>) {
    let mut kept = Vec::with_capacity(argv.len());
    let mut warnings = Vec::new();
    let mut iter = argv.into_iter();
    while let Some(arg) = iter.next() {
        let Some(text) = arg.to_str() else {
            kept.push(arg);
            continue;
        };
        if text == "--" {
            kept.push(arg);
            kept.extend(iter.by_ref());
            break;
        }
        let Some(flag) = text.strip_prefix("--") else {
            kept.push(arg);
            continue;
        };
        let (name, inline_value) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (flag, None),
        };
        let Some(takes_value) = ignored_flag(name) else {
            kept.push(arg);
            continue;
        };
        let value = match (inline_value, takes_value) {
            (Some(v), _) => Some(v.to_owned()),
            (None, true) => iter.next().map(|v| v.to_string_lossy().into_owned()),
            (None, false) => None,
        };
        warnings.push(match value {
            Some(v) => format!("ignoring --{name}={v}: accepted for metrics-server compatibility, has no effect here"),
            None => format!("ignoring --{name}: accepted for metrics-server compatibility, has no effect here"),
        });
    }
    (kept, warnings)
}

/// The `--help` epilogue listing every accepted-and-ignored flag, wrapped at 120 columns.
fn ignored_flags_help() -> String {
    let mut help = String::from(
        "Also accepted for metrics-server compatibility and ignored with a warning (`*` = any suffix):\n",
    );
    let mut line = String::new();
    for (name, _) in IGNORED_FLAGS {
        let item = format!("--{name}");
        if !line.is_empty() && line.len() + 1 + item.len() > 118 {
            help.push_str("  ");
            help.push_str(&line);
            help.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&item);
    }
    help.push_str("  ");
    help.push_str(&line);
    help
}

/// `Some(takes_value)` when `name` (without dashes) is an ignorable flag.
fn ignored_flag(name: &str) -> Option<bool> {
    IGNORED_FLAGS.iter().find_map(|&(pattern, takes_value)| {
        let hit = match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == pattern,
        };
        hit.then_some(takes_value)
    })
}

/// Validated configuration. Field groups mirror the flag groups.
#[derive(Debug, Clone)]
pub struct Config {
    /// The raw flags this was built from (for components that need a value verbatim, e.g. the auth flags).
    pub args: Args,
    /// Scrape interval (`--metric-resolution`), at least 10 s.
    pub resolution: Duration,
    /// How long a last good window stays servable: `--metric-staleness`, or 2 × resolution + kubelet timeout.
    pub staleness: Duration,
    /// `--node-selector` verbatim (the `cluster` module parses it); empty selects every node.
    pub node_selector: String,
    /// How kubelets are reached.
    pub kubelet: KubeletConfig,
    /// The HTTPS listener.
    pub serving: ServingConfig,
    /// Log output.
    pub logging: LoggingConfig,
    /// `--max-requests-inflight`: concurrent API requests before 429; 0 = unlimited (apiserver semantics).
    pub max_requests_inflight: usize,
    /// `--shutdown-delay-duration`: after SIGTERM, keep serving (with `/readyz` failing) this long before closing
    /// the listener, so endpoints and load balancers drop the pod first.
    pub shutdown_delay: Duration,
    /// Time given to in-flight requests to finish once the listener is closed: max(10 s, shutdown delay).
    pub shutdown_grace: Duration,
}

/// Kubelet client settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletConfig {
    /// `--kubelet-port`.
    pub port: u16,
    /// `--kubelet-use-node-status-port`: prefer the node's reported kubelet port when non-zero.
    pub use_node_status_port: bool,
    /// `--kubelet-preferred-address-types`, in priority order.
    pub preferred_address_types: Vec<AddressType>,
    /// Deadline of one scrape (`--kubelet-request-timeout`), > 0.
    pub request_timeout: Duration,
    /// How the kubelet's serving certificate is checked (or plain HTTP).
    pub tls: KubeletTls,
    /// Client certificate presented to kubelets, if any (the bearer token is sent regardless).
    pub client_cert: Option<CertKeyPair>,
    /// Largest accepted response body, in bytes.
    pub max_body_bytes: u64,
    /// Scrapes in flight at once (≥ 1).
    pub max_concurrency: usize,
}

/// A node address type, in `node.status.addresses[].type` spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressType {
    /// `Hostname`.
    Hostname,
    /// `InternalDNS`.
    InternalDns,
    /// `InternalIP`.
    InternalIp,
    /// `ExternalDNS`.
    ExternalDns,
    /// `ExternalIP`.
    ExternalIp,
}

/// How kubelet serving certificates are verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeletTls {
    /// Verify against the cluster CA from the kubeconfig / service account (the default).
    ClusterCa,
    /// Verify against this CA bundle (`--kubelet-certificate-authority`).
    CaFile(PathBuf),
    /// Do not verify (`--kubelet-insecure-tls`).
    InsecureSkipVerify,
    /// Plain HTTP, no credentials (`--deprecated-kubelet-completely-insecure`).
    PlainHttp,
}

/// A PEM certificate file and its PEM private key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertKeyPair {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key of the leaf.
    pub key: PathBuf,
}

/// HTTPS listener settings.
#[derive(Debug, Clone)]
pub struct ServingConfig {
    /// `--bind-address`:`--secure-port` (port 0 picks a free port).
    pub bind: SocketAddr,
    /// Where the serving certificate comes from.
    pub cert: ServingCert,
    /// Lowest TLS version accepted.
    pub min_tls_version: TlsVersion,
    /// Cipher suites named by `--tls-cipher-suites`; empty = the ring provider's defaults. As in Go, the list
    /// governs TLS 1.2; TLS 1.3 suites are the defaults unless the list names some of them.
    pub cipher_suites: Vec<SupportedCipherSuite>,
}

/// Source of the serving certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServingCert {
    /// `--tls-cert-file` / `--tls-private-key-file`, reloaded when they change on disk.
    Files(CertKeyPair),
    /// `<cert-dir>/apiserver.crt|.key`, generated (self-signed) when absent.
    CertDir(PathBuf),
}

/// A TLS protocol version accepted as `--tls-min-version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// `VersionTLS12`.
    Tls12,
    /// `VersionTLS13`.
    Tls13,
}

/// Log settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggingConfig {
    /// `--logging-format`.
    pub format: LogFormat,
    /// `-v`: 0 = info, 2+ = debug, 5+ = trace.
    pub verbosity: u8,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Every problem found in the flags, reported together.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .problems.join("\n  - "))]
pub struct ConfigError {
    /// One message per violated rule.
    pub problems: Vec<String>,
}

// === impl Config ===

impl TryFrom<Args> for Config {
    type Error = ConfigError;

    fn try_from(args: Args) -> Result<Self, Self::Error> {
        let mut problems = Vec::new();
        check_resolution(&args, &mut problems);
        let kubelet = kubelet_config(&args, &mut problems);
        let serving = serving_config(&args, &mut problems);
        let format = LogFormat::parse(&args.logging_format)
            .map_err(|p| problems.push(p))
            .unwrap_or_default();
        // Parsed here only to report a bad selector with the other flag problems (exit 64); `cluster` parses it again
        // when it builds the index.
        if let Err(error) = crate::cluster::index::NodeSelector::parse(&args.node_selector) {
            problems.push(format!("node-selector: {error}"));
        }
        let staleness = if args.metric_staleness.is_zero() {
            args.metric_resolution
                .saturating_mul(2)
                .saturating_add(args.kubelet_request_timeout)
        } else {
            if args.metric_staleness < args.metric_resolution {
                problems.push(format!(
                    "metric-staleness ({}) must be at least metric-resolution ({}), or 0 for the default",
                    go_duration(args.metric_staleness),
                    go_duration(args.metric_resolution)
                ));
            }
            args.metric_staleness
        };
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        Ok(Config {
            resolution: args.metric_resolution,
            staleness,
            node_selector: args.node_selector.clone(),
            kubelet,
            serving,
            logging: LoggingConfig {
                format,
                verbosity: args.verbosity,
            },
            max_requests_inflight: args.max_requests_inflight,
            shutdown_delay: args.shutdown_delay_duration,
            shutdown_grace: args.shutdown_delay_duration.max(MIN_SHUTDOWN_GRACE),
            args,
        })
    }
}

/// metrics-server's three timing rules.
fn check_resolution(args: &Args, problems: &mut Vec<String>) {
    let resolution = args.metric_resolution;
    let timeout = args.kubelet_request_timeout;
    if resolution < MIN_RESOLUTION {
        problems.push(format!(
            "metric-resolution should be a time duration at least 10s, but value {} provided",
            go_duration(resolution)
        ));
    }
    if resolution.mul_f64(0.9) < timeout {
        problems.push(format!(
            "metric-resolution should be larger than kubelet-request-timeout, but metric-resolution value {} \
             kubelet-request-timeout value {} provided (the timeout may be at most 0.9 × resolution)",
            go_duration(resolution),
            go_duration(timeout)
        ));
    }
    if timeout.is_zero() {
        problems.push("kubelet-request-timeout should be positive".to_owned());
    }
}

fn kubelet_config(args: &Args, problems: &mut Vec<String>) -> KubeletConfig {
    let ca = non_empty(&args.kubelet_certificate_authority);
    let cert = non_empty(&args.kubelet_client_certificate);
    let key = non_empty(&args.kubelet_client_key);
    if ca.is_some() && args.kubelet_insecure_tls {
        problems.push(
            "cannot use both --kubelet-certificate-authority and --kubelet-insecure-tls".to_owned(),
        );
    }
    if cert.is_some() != key.is_some() {
        problems.push("need both --kubelet-client-key and --kubelet-client-certificate".to_owned());
    }
    if args.deprecated_kubelet_completely_insecure {
        let conflicts = [
            ("kubelet-client-key", key.is_some()),
            ("kubelet-client-certificate", cert.is_some()),
            ("kubelet-certificate-authority", ca.is_some()),
            ("kubelet-insecure-tls", args.kubelet_insecure_tls),
        ];
        for (flag, set) in conflicts {
            if set {
                problems.push(format!(
                    "cannot use both --deprecated-kubelet-completely-insecure and --{flag}"
                ));
            }
        }
    }
    for (flag, path) in [
        ("kubelet-certificate-authority", ca),
        ("kubelet-client-certificate", cert),
        ("kubelet-client-key", key),
    ] {
        if let Some(path) = path {
            check_readable(flag, path, problems);
        }
    }
    if args.kubelet_max_body_bytes == 0 {
        problems.push("kubelet-max-body-bytes should be positive".to_owned());
    }
    if args.kubelet_max_concurrency == 0 {
        problems.push("kubelet-max-concurrency should be at least 1".to_owned());
    }
    let preferred_address_types = args
        .kubelet_preferred_address_types
        .iter()
        .filter_map(|name| AddressType::parse(name).map_err(|p| problems.push(p)).ok())
        .collect::<Vec<_>>();
    if args.kubelet_preferred_address_types.is_empty() {
        problems
            .push("kubelet-preferred-address-types must name at least one address type".to_owned());
    }
    let tls = if args.deprecated_kubelet_completely_insecure {
        KubeletTls::PlainHttp
    } else if args.kubelet_insecure_tls {
        KubeletTls::InsecureSkipVerify
    } else if let Some(ca) = ca {
        KubeletTls::CaFile(ca.to_path_buf())
    } else {
        KubeletTls::ClusterCa
    };
    let client_cert = match (cert, key) {
        (Some(cert), Some(key)) => Some(CertKeyPair {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        }),
        _ => None,
    };
    KubeletConfig {
        port: args.kubelet_port,
        use_node_status_port: args.kubelet_use_node_status_port,
        preferred_address_types,
        request_timeout: args.kubelet_request_timeout,
        tls,
        client_cert,
        max_body_bytes: args.kubelet_max_body_bytes,
        max_concurrency: args.kubelet_max_concurrency,
    }
}

fn serving_config(args: &Args, problems: &mut Vec<String>) -> ServingConfig {
    let cert_file = non_empty(&args.tls_cert_file);
    let key_file = non_empty(&args.tls_private_key_file);
    let cert = match (cert_file, key_file) {
        (Some(cert), Some(key)) => {
            check_readable("tls-cert-file", cert, problems);
            check_readable("tls-private-key-file", key, problems);
            ServingCert::Files(CertKeyPair {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            })
        }
        (None, None) => ServingCert::CertDir(args.cert_dir.clone()),
        _ => {
            problems.push(
                "--tls-cert-file and --tls-private-key-file must be given together".to_owned(),
            );
            ServingCert::CertDir(args.cert_dir.clone())
        }
    };
    let min_tls_version = TlsVersion::parse(&args.tls_min_version)
        .map_err(|p| problems.push(p))
        .unwrap_or(TlsVersion::Tls12);
    let cipher_suites = args
        .tls_cipher_suites
        .iter()
        .map(|name| name.trim())
        .filter(|name| !name.is_empty())
        .filter_map(|name| cipher_suite(name).map_err(|p| problems.push(p)).ok())
        .collect::<Vec<_>>();
    ServingConfig {
        bind: SocketAddr::new(args.bind_address, args.secure_port),
        cert,
        min_tls_version,
        cipher_suites,
    }
}

fn non_empty(path: &str) -> Option<&Path> {
    (!path.is_empty()).then(|| Path::new(path))
}

fn check_readable(flag: &str, path: &Path, problems: &mut Vec<String>) {
    if let Err(error) = std::fs::File::open(path) {
        problems.push(format!(
            "cannot read --{flag} {:?}: {error}",
            path.display().to_string()
        ));
    }
}

// === impl AddressType ===

impl AddressType {
    /// Every address type, in metrics-server's default priority order.
    pub const ALL: [AddressType; 5] = [
        AddressType::Hostname,
        AddressType::InternalDns,
        AddressType::InternalIp,
        AddressType::ExternalDns,
        AddressType::ExternalIp,
    ];

    /// The `node.status.addresses[].type` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressType::Hostname => "Hostname",
            AddressType::InternalDns => "InternalDNS",
            AddressType::InternalIp => "InternalIP",
            AddressType::ExternalDns => "ExternalDNS",
            AddressType::ExternalIp => "ExternalIP",
        }
    }

    /// Parses the exact Kubernetes spelling (case-sensitive, as node status uses it).
    ///
    /// # Errors
    /// A message listing the valid names.
    pub fn parse(name: &str) -> Result<Self, String> {
        let name = name.trim();
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == name)
            .ok_or_else(|| {
                format!(
                    "unknown kubelet-preferred-address-types entry {name:?}: valid types are \
                 Hostname, InternalDNS, InternalIP, ExternalDNS, ExternalIP"
                )
            })
    }
}

// === impl TlsVersion ===

impl TlsVersion {
    /// Parses Go's names (`VersionTLS12`, `VersionTLS13`).
    ///
    /// # Errors
    /// TLS 1.0 and 1.1 are refused with a message saying why; anything else is unknown.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "VersionTLS12" => Ok(TlsVersion::Tls12),
            "VersionTLS13" => Ok(TlsVersion::Tls13),
            "VersionTLS10" | "VersionTLS11" => Err(format!(
                "--tls-min-version={name} is not supported: TLS 1.0 and 1.1 are insecure and not implemented; \
                 use VersionTLS12 or VersionTLS13"
            )),
            _ => Err(format!(
                "unknown --tls-min-version {name:?}: use VersionTLS12 or VersionTLS13"
            )),
        }
    }
}

// === impl LogFormat ===

impl LogFormat {
    /// Parses `text` or `json`.
    ///
    /// # Errors
    /// A message naming the accepted values.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!(
                "unsupported --logging-format {name:?}: use text or json"
            )),
        }
    }
}

/// Maps a Go / IANA cipher suite name to the ring provider's suite.
///
/// Go's TLS 1.3 names are accepted (Go ignores them in its configuration; here they restrict the TLS 1.3 suites).
/// Suites Go knows but that are insecure or not implemented by rustls (CBC, RSA key exchange, 3DES, RC4) are refused
/// with a message saying so.
///
/// # Errors
/// A message naming the suite and the supported names.
pub fn cipher_suite(name: &str) -> Result<SupportedCipherSuite, String> {
    let suite = match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => {
            ring_suites::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        }
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => {
            ring_suites::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        }
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            ring_suites::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => {
            ring_suites::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => {
            ring_suites::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
        }
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            ring_suites::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_AES_128_GCM_SHA256" => ring_suites::TLS13_AES_128_GCM_SHA256,
        "TLS_AES_256_GCM_SHA384" => ring_suites::TLS13_AES_256_GCM_SHA384,
        "TLS_CHACHA20_POLY1305_SHA256" => ring_suites::TLS13_CHACHA20_POLY1305_SHA256,
        _ if is_known_unsupported_suite(name) => {
            return Err(format!(
                "--tls-cipher-suites: {name} is not supported (CBC, RSA key exchange, 3DES and RC4 suites are \
                 insecure and not implemented); supported: {SUPPORTED_SUITE_NAMES}"
            ));
        }
        _ => {
            return Err(format!(
                "--tls-cipher-suites: unknown cipher suite {name:?}; supported: {SUPPORTED_SUITE_NAMES}"
            ));
        }
    };
    Ok(suite)
}

/// The names [`cipher_suite`] accepts, for error messages.
const SUPPORTED_SUITE_NAMES: &str = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, \
     TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, \
     TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, TLS_AES_128_GCM_SHA256, \
     TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256";

/// Go cipher suite names (`crypto/tls` and its insecure list) that rustls does not implement.
fn is_known_unsupported_suite(name: &str) -> bool {
    name.starts_with("TLS_RSA_WITH_")
        || name.starts_with("TLS_ECDHE_RSA_WITH_3DES")
        || name.starts_with("TLS_ECDHE_RSA_WITH_RC4")
        || name.starts_with("TLS_ECDHE_ECDSA_WITH_RC4")
        || name.contains("_CBC_")
}

/// Formats a duration the way Go prints `time.Duration` for the common cases (`10s`, `1m0s`, `500ms`, `1.5s`).
pub fn go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    if d < Duration::from_secs(1) {
        let ms = d.as_secs_f64() * 1e3;
        return if ms >= 1.0 {
            format!("{ms}ms")
        } else {
            format!("{}µs", d.as_secs_f64() * 1e6)
        };
    }
    let total = d.as_secs();
    let frac = d.subsec_nanos();
    let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60);
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        let mut f = format!("{:09}", frac);
        while f.ends_with('0') {
            f.pop();
        }
        format!("{s}.{f}s")
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}
