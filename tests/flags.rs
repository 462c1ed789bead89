//! The flags reference: `docs/flags.txt` is exactly the binary's `--help`, and every metrics-server flag (reference
//! §1) is either served (listed in `--help`) or accepted and ignored with a warning, so existing manifests start.
//!
//! Refresh the golden file after changing a flag with `UPDATE_GOLDEN=1 cargo test --test flags`. These tests only run
//! the built binary with `--help` and parse argument lists; they open no sockets and read no cluster.
#![allow(clippy::expect_used)] // A test fails by panicking; `expect` says which step broke.

use std::path::PathBuf;
use std::process::Command;

use resource_metrics_server::config;

/// The golden file, relative to the package root.
const GOLDEN: &str = "docs/flags.txt";

/// The refresh command printed when the golden file is stale.
const REFRESH: &str = "UPDATE_GOLDEN=1 cargo test --test flags";

/// Every flag metrics-server documents (behaviour reference §1.1 and §1.2), with arguments that use it the way
/// manifests and charts do. Generic apiserver flags that mean nothing here are in the ignored group on purpose.
const METRICS_SERVER_FLAGS: &[(&str, &[&str])] = &[
    // §1.1 server and kubelet client
    ("metric-resolution", &["--metric-resolution=15s"]),
    (
        "kubeconfig",
        &["--kubeconfig", "/etc/kubernetes/admin.conf"],
    ),
    (
        "kubelet-preferred-address-types",
        &["--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname"],
    ),
    ("kubelet-port", &["--kubelet-port=10250"]),
    (
        "kubelet-use-node-status-port",
        &["--kubelet-use-node-status-port"],
    ),
    ("kubelet-insecure-tls", &["--kubelet-insecure-tls"]),
    (
        "kubelet-certificate-authority",
        &["--kubelet-certificate-authority=/ca/kubelet-ca.crt"],
    ),
    (
        "kubelet-client-certificate",
        &["--kubelet-client-certificate=/pki/client.crt"],
    ),
    (
        "kubelet-client-key",
        &["--kubelet-client-key=/pki/client.key"],
    ),
    (
        "kubelet-request-timeout",
        &["--kubelet-request-timeout=10s"],
    ),
    (
        "node-selector",
        &["--node-selector=metrics-server-skip!=true"],
    ),
    ("node-selector", &["-l", "kubernetes.io/os=linux"]),
    (
        "deprecated-kubelet-completely-insecure",
        &["--deprecated-kubelet-completely-insecure=true"],
    ),
    // §1.2 serving
    ("secure-port", &["--secure-port=10250"]),
    ("bind-address", &["--bind-address=0.0.0.0"]),
    ("cert-dir", &["--cert-dir=/tmp"]),
    ("tls-cert-file", &["--tls-cert-file=/certs/tls.crt"]),
    (
        "tls-private-key-file",
        &["--tls-private-key-file=/certs/tls.key"],
    ),
    ("tls-min-version", &["--tls-min-version=VersionTLS12"]),
    (
        "tls-cipher-suites",
        &["--tls-cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_AES_128_GCM_SHA256"],
    ),
    (
        "tls-sni-cert-key",
        &["--tls-sni-cert-key=/certs/a.crt,/certs/a.key:a.example.com"],
    ),
    // §1.2 authentication
    (
        "authentication-kubeconfig",
        &["--authentication-kubeconfig=/etc/kubernetes/authn.conf"],
    ),
    (
        "authentication-skip-lookup",
        &["--authentication-skip-lookup"],
    ),
    (
        "authentication-tolerate-lookup-failure",
        &["--authentication-tolerate-lookup-failure=true"],
    ),
    (
        "authentication-token-webhook-cache-ttl",
        &["--authentication-token-webhook-cache-ttl=10s"],
    ),
    ("client-ca-file", &["--client-ca-file=/pki/ca.crt"]),
    (
        "requestheader-client-ca-file",
        &["--requestheader-client-ca-file=/pki/front-proxy-ca.crt"],
    ),
    (
        "requestheader-allowed-names",
        &["--requestheader-allowed-names=front-proxy-client"],
    ),
    (
        "requestheader-username-headers",
        &["--requestheader-username-headers=X-Remote-User"],
    ),
    (
        "requestheader-group-headers",
        &["--requestheader-group-headers=X-Remote-Group"],
    ),
    (
        "requestheader-extra-headers-prefix",
        &["--requestheader-extra-headers-prefix=X-Remote-Extra-"],
    ),
    (
        "requestheader-uid-headers",
        &["--requestheader-uid-headers=X-Remote-Uid"],
    ),
    // §1.2 authorization
    (
        "authorization-kubeconfig",
        &["--authorization-kubeconfig=/etc/kubernetes/authz.conf"],
    ),
    (
        "authorization-always-allow-paths",
        &["--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics"],
    ),
    (
        "authorization-webhook-cache-authorized-ttl",
        &["--authorization-webhook-cache-authorized-ttl=10s"],
    ),
    (
        "authorization-webhook-cache-unauthorized-ttl",
        &["--authorization-webhook-cache-unauthorized-ttl=10s"],
    ),
    // §1.2 run, shutdown and logging
    ("shutdown-delay-duration", &["--shutdown-delay-duration=5s"]),
    ("request-timeout", &["--request-timeout", "1m0s"]),
    ("max-requests-inflight", &["--max-requests-inflight=400"]),
    ("profiling", &["--profiling=false"]),
    ("profiling", &["--profiling"]),
    ("v", &["-v=2"]),
    ("v", &["--v=4"]),
    ("logging-format", &["--logging-format=json"]),
];

/// What the built binary prints for `--help` (the same bytes a user sees).
fn binary_help() -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_resource-metrics-server"))
        .arg("--help")
        .env_remove("RUST_LOG")
        .output()
        .expect("the server binary runs");
    assert!(
        output.status.success(),
        "--help exits 0: {:?}",
        output.status
    );
    String::from_utf8(output.stdout).expect("--help is UTF-8")
}

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(GOLDEN)
}

/// The first line where `want` and `got` differ, as a short hint (1-based line number and both texts).
fn first_difference(want: &str, got: &str) -> String {
    let mut want_lines = want.lines();
    let mut got_lines = got.lines();
    for number in 1.. {
        match (want_lines.next(), got_lines.next()) {
            (None, None) => break,
            (w, g) if w == g => continue,
            (w, g) => {
                return format!(
                    "first difference at line {number}:\n  {GOLDEN}: {}\n  --help:        {}",
                    w.unwrap_or("<end of file>"),
                    g.unwrap_or("<end of output>")
                );
            }
        }
    }
    "only trailing whitespace or line endings differ".to_owned()
}

#[test]
fn the_flags_reference_is_the_binarys_help() {
    let help = binary_help();
    let path = golden_path();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &help).expect("write the golden file");
        return;
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        golden == help,
        "{GOLDEN} does not match `resource-metrics-server --help`; {}\nIf the change is intended, refresh it with: {REFRESH}",
        first_difference(&golden, &help)
    );
}

#[test]
fn every_metrics_server_flag_parses_and_is_served_or_ignored_with_a_warning() {
    let help = binary_help();
    let (served_help, ignored_help) = help
        .split_once("Also accepted for metrics-server compatibility")
        .expect("--help lists the ignored flags after the options");
    for (name, argv) in METRICS_SERVER_FLAGS {
        let args = std::iter::once("resource-metrics-server").chain(argv.iter().copied());
        let (_, warnings) = config::parse_args(args)
            .unwrap_or_else(|error| panic!("{argv:?} is rejected: {error}"));
        let flag = format!("--{name}");
        let listed = |text: &str| {
            text.split(|c: char| c.is_whitespace() || c == ',')
                .any(|word| word == flag)
        };
        match warnings.as_slice() {
            [] => assert!(
                listed(served_help),
                "{flag} is accepted without a warning, so --help must list it among the options"
            ),
            [warning] => {
                assert!(
                    warning.starts_with(&format!("ignoring {flag}")),
                    "{argv:?} warns about itself: {warning}"
                );
                assert!(
                    listed(ignored_help) || ignored_prefix_listed(ignored_help, name),
                    "{flag} is ignored, so --help must list it among the ignored flags"
                );
            }
            more => panic!("{argv:?} gives one warning at most: {more:?}"),
        }
    }
}

/// Whether `--prefix*` in the ignored list covers `name`.
fn ignored_prefix_listed(ignored_help: &str, name: &str) -> bool {
    ignored_help
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("--")?.strip_suffix('*'))
        .any(|prefix| name.starts_with(prefix))
}

#[test]
fn version_is_served() {
    let output = Command::new(env!("CARGO_BIN_EXE_resource-metrics-server"))
        .arg("--version")
        .output()
        .expect("the server binary runs");
    assert!(output.status.success(), "--version exits 0");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.starts_with("resource-metrics-server "),
        "names the program: {text}"
    );
}
