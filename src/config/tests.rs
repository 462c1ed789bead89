//! Tests of flag parsing and validation: one table row per rule, plus reporting several violations at once.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly on broken fixtures

use super::*;

fn args(extra: &[&str]) -> Args {
    let argv = std::iter::once("resource-metrics-server").chain(extra.iter().copied());
    let (args, _warnings) = parse_args(argv).expect("test flags must parse");
    args
}

fn problems(extra: &[&str]) -> Vec<String> {
    match Config::try_from(args(extra)) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems,
    }
}

/// A file that exists, for flags whose files must be readable.
fn existing_file() -> tempfile::NamedTempFile {
    tempfile::NamedTempFile::new().expect("temp file")
}

#[test]
fn every_validation_rule_reports_its_message() {
    let file = existing_file();
    let f = file.path().to_str().expect("utf-8 temp path");
    struct Case<'a> {
        name: &'a str,
        flags: Vec<String>,
        want: &'a [&'a str],
    }
    let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let cases = [
        Case {
            name: "defaults are valid",
            flags: vec![],
            want: &[],
        },
        Case {
            name: "manifest flags are valid",
            flags: own(&[
                "--metric-resolution=15s",
                "--secure-port=10250",
                "--kubelet-insecure-tls",
            ]),
            want: &[],
        },
        Case {
            name: "resolution below ten seconds",
            flags: own(&["--metric-resolution=5s", "--kubelet-request-timeout=1s"]),
            want: &[
                "metric-resolution should be a time duration at least 10s, but value 5s provided",
            ],
        },
        Case {
            name: "timeout above nine tenths of the resolution",
            flags: own(&[
                "--metric-resolution=10s",
                "--kubelet-request-timeout=9500ms",
            ]),
            want: &["metric-resolution should be larger than kubelet-request-timeout"],
        },
        Case {
            name: "timeout of exactly nine tenths is accepted",
            flags: own(&["--metric-resolution=10s", "--kubelet-request-timeout=9s"]),
            want: &[],
        },
        Case {
            name: "zero timeout",
            flags: own(&["--kubelet-request-timeout=0s"]),
            want: &["kubelet-request-timeout should be positive"],
        },
        Case {
            name: "kubelet CA together with insecure TLS",
            flags: own(&[
                &format!("--kubelet-certificate-authority={f}"),
                "--kubelet-insecure-tls",
            ]),
            want: &["cannot use both --kubelet-certificate-authority and --kubelet-insecure-tls"],
        },
        Case {
            name: "client certificate without key",
            flags: own(&[&format!("--kubelet-client-certificate={f}")]),
            want: &["need both --kubelet-client-key and --kubelet-client-certificate"],
        },
        Case {
            name: "client key without certificate",
            flags: own(&[&format!("--kubelet-client-key={f}")]),
            want: &["need both --kubelet-client-key and --kubelet-client-certificate"],
        },
        Case {
            name: "completely insecure conflicts with insecure TLS",
            flags: own(&[
                "--deprecated-kubelet-completely-insecure",
                "--kubelet-insecure-tls",
            ]),
            want: &[
                "cannot use both --deprecated-kubelet-completely-insecure and --kubelet-insecure-tls",
            ],
        },
        Case {
            name: "completely insecure conflicts with a CA",
            flags: own(&[
                "--deprecated-kubelet-completely-insecure=true",
                &format!("--kubelet-certificate-authority={f}"),
            ]),
            want: &[
                "cannot use both --deprecated-kubelet-completely-insecure and --kubelet-certificate-authority",
            ],
        },
        Case {
            name: "serving certificate without key",
            flags: own(&[&format!("--tls-cert-file={f}")]),
            want: &["--tls-cert-file and --tls-private-key-file must be given together"],
        },
        Case {
            name: "unreadable serving certificate",
            flags: own(&[
                "--tls-cert-file=/nonexistent/x.crt",
                &format!("--tls-private-key-file={f}"),
            ]),
            want: &["cannot read --tls-cert-file \"/nonexistent/x.crt\""],
        },
        Case {
            name: "unknown logging format",
            flags: own(&["--logging-format=yaml"]),
            want: &["unsupported --logging-format \"yaml\": use text or json"],
        },
        Case {
            name: "TLS 1.1 as minimum version is refused",
            flags: own(&["--tls-min-version=VersionTLS11"]),
            want: &[
                "--tls-min-version=VersionTLS11 is not supported: TLS 1.0 and 1.1 are insecure",
            ],
        },
        Case {
            name: "TLS 1.0 as minimum version is refused",
            flags: own(&["--tls-min-version=VersionTLS10"]),
            want: &["TLS 1.0 and 1.1 are insecure"],
        },
        Case {
            name: "unknown minimum version",
            flags: own(&["--tls-min-version=TLS1.3"]),
            want: &["unknown --tls-min-version \"TLS1.3\""],
        },
        Case {
            name: "CBC cipher suite is refused as insecure",
            flags: own(&["--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"]),
            want: &["TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA is not supported"],
        },
        Case {
            name: "unknown cipher suite",
            flags: own(&["--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,NOPE"]),
            want: &["unknown cipher suite \"NOPE\""],
        },
        Case {
            name: "unknown address type",
            flags: own(&["--kubelet-preferred-address-types=InternalIP,internalip"]),
            want: &["unknown kubelet-preferred-address-types entry \"internalip\""],
        },
        Case {
            name: "staleness shorter than the resolution",
            flags: own(&["--metric-resolution=15s", "--metric-staleness=10s"]),
            want: &["metric-staleness (10s) must be at least metric-resolution (15s)"],
        },
        Case {
            name: "zero body cap",
            flags: own(&["--kubelet-max-body-bytes=0"]),
            want: &["kubelet-max-body-bytes should be positive"],
        },
        Case {
            name: "zero kubelet concurrency",
            flags: own(&["--kubelet-max-concurrency=0"]),
            want: &["kubelet-max-concurrency should be at least 1"],
        },
    ];
    for case in cases {
        let refs = case.flags.iter().map(String::as_str).collect::<Vec<_>>();
        let got = problems(&refs);
        assert_eq!(got.len(), case.want.len(), "{}: got {got:?}", case.name);
        for (got, want) in got.iter().zip(case.want) {
            assert!(
                got.contains(want),
                "{}: {got:?} should contain {want:?}",
                case.name
            );
        }
    }
}

#[test]
fn every_violation_is_reported_together() {
    let got = problems(&[
        "--metric-resolution=5s",
        "--kubelet-request-timeout=0s",
        "--kubelet-insecure-tls",
        "--deprecated-kubelet-completely-insecure",
        "--logging-format=xml",
        "--tls-min-version=VersionTLS10",
        "--tls-cert-file=/x",
        "--node-selector=role in (a",
    ]);
    let wanted = [
        "node-selector:",
        "metric-resolution should be a time duration at least 10s",
        "kubelet-request-timeout should be positive",
        "cannot use both --deprecated-kubelet-completely-insecure and --kubelet-insecure-tls",
        "--tls-cert-file and --tls-private-key-file must be given together",
        "TLS 1.0 and 1.1 are insecure",
        "unsupported --logging-format",
    ];
    for want in wanted {
        assert!(
            got.iter().any(|p| p.contains(want)),
            "missing {want:?} in {got:?}"
        );
    }
    assert_eq!(got.len(), wanted.len(), "{got:?}");
    let message = ConfigError { problems: got }.to_string();
    assert!(
        message.starts_with("invalid configuration:\n  - "),
        "{message}"
    );
}

#[test]
fn typed_fields_follow_the_flags() {
    let file = existing_file();
    let f = file.path().to_str().expect("utf-8 temp path");
    let config = Config::try_from(args(&[
        "--metric-resolution=15s",
        "--kubelet-request-timeout=5s",
        "--bind-address=127.0.0.1",
        "--secure-port=4443",
        "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
        &format!("--kubelet-certificate-authority={f}"),
        &format!("--kubelet-client-certificate={f}"),
        &format!("--kubelet-client-key={f}"),
        &format!("--tls-cert-file={f}"),
        &format!("--tls-private-key-file={f}"),
        "--tls-min-version=VersionTLS13",
        "--tls-cipher-suites=TLS_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        "--logging-format=json",
        "-v=4",
        "-l",
        "metrics-server-skip!=true",
        "--shutdown-delay-duration=15s",
    ]))
    .expect("valid flags");
    assert_eq!(config.resolution, Duration::from_secs(15));
    assert_eq!(config.staleness, Duration::from_secs(35), "2 × 15s + 5s");
    assert_eq!(config.serving.bind, "127.0.0.1:4443".parse().expect("addr"));
    assert_eq!(
        config.kubelet.preferred_address_types,
        vec![
            AddressType::InternalIp,
            AddressType::ExternalIp,
            AddressType::Hostname
        ]
    );
    assert_eq!(config.kubelet.tls, KubeletTls::CaFile(f.into()));
    assert_eq!(
        config.kubelet.client_cert,
        Some(CertKeyPair {
            cert: f.into(),
            key: f.into()
        })
    );
    assert_eq!(
        config.serving.cert,
        ServingCert::Files(CertKeyPair {
            cert: f.into(),
            key: f.into()
        })
    );
    assert_eq!(config.serving.min_tls_version, TlsVersion::Tls13);
    assert_eq!(config.serving.cipher_suites.len(), 2);
    assert_eq!(
        config.logging,
        LoggingConfig {
            format: LogFormat::Json,
            verbosity: 4
        }
    );
    assert_eq!(config.node_selector, "metrics-server-skip!=true");
    assert_eq!(config.shutdown_grace, Duration::from_secs(15));
    assert_eq!(config.kubelet.max_body_bytes, 64 * 1024 * 1024);
    assert_eq!(config.kubelet.max_concurrency, 64);
}

#[test]
fn kubelet_tls_mode_follows_the_flags() {
    let cases = [
        (
            "no flags verify with the cluster CA",
            vec![],
            KubeletTls::ClusterCa,
        ),
        (
            "insecure flag skips verification",
            vec!["--kubelet-insecure-tls"],
            KubeletTls::InsecureSkipVerify,
        ),
        (
            "completely insecure uses plain HTTP",
            vec![
                "--deprecated-kubelet-completely-insecure",
                "--kubelet-port=10255",
            ],
            KubeletTls::PlainHttp,
        ),
    ];
    for (name, flags, want) in cases {
        let config = Config::try_from(args(&flags)).expect(name);
        assert_eq!(config.kubelet.tls, want, "{name}");
    }
}

#[test]
fn explicit_staleness_and_default_cert_dir_are_kept() {
    let config =
        Config::try_from(args(&["--metric-staleness=2m", "--cert-dir=/tmp/certs"])).expect("valid");
    assert_eq!(config.staleness, Duration::from_secs(120));
    assert_eq!(
        config.serving.cert,
        ServingCert::CertDir("/tmp/certs".into())
    );
    assert_eq!(config.shutdown_grace, MIN_SHUTDOWN_GRACE);
    assert_eq!(config.max_requests_inflight, 400);
}

#[test]
fn ignorable_metrics_server_flags_are_stripped_with_a_warning() {
    let argv = [
        "rms",
        "--profiling",
        "--contention-profiling=false",
        "--audit-log-path",
        "/var/log/audit",
        "--audit-log-compress",
        "--tls-sni-cert-key=a.crt,a.key",
        "--request-timeout",
        "2m",
        "--vmodule=foo=2",
        "--log-flush-frequency",
        "5s",
        "--enable-priority-and-fairness=false",
        "--metric-resolution=15s",
        "-v",
        "3",
    ];
    let (args, warnings) = parse_args(argv).expect("ignorable flags must not fail");
    assert_eq!(args.metric_resolution, Duration::from_secs(15));
    assert_eq!(args.verbosity, 3);
    let joined = warnings.join("\n");
    for flag in [
        "--profiling",
        "--contention-profiling=false",
        "--audit-log-path=/var/log/audit",
        "--audit-log-compress",
        "--tls-sni-cert-key=a.crt,a.key",
        "--request-timeout=2m",
        "--vmodule=foo=2",
        "--log-flush-frequency=5s",
        "--enable-priority-and-fairness=false",
    ] {
        assert!(
            joined.contains(&format!("ignoring {flag}:")),
            "missing {flag} in {joined}"
        );
    }
    assert_eq!(warnings.len(), 9);
}

#[test]
fn unknown_flags_are_still_errors() {
    let err = parse_args(["rms", "--no-such-flag"]).expect_err("unknown flag");
    assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
}

#[test]
fn go_durations_round_trip() {
    let cases = [
        ("10s", "10s"),
        ("1m0s", "1m0s"),
        ("90s", "1m30s"),
        ("1h", "1h0m0s"),
        ("1.5s", "1.5s"),
        ("500ms", "500ms"),
    ];
    for (input, want) in cases {
        let d = parse_duration(input).expect(input);
        assert_eq!(go_duration(d), want, "{input}");
    }
    assert!(
        parse_duration("10").is_err(),
        "a bare number other than 0 is not a duration"
    );
    assert!(
        parse_duration("-1s").is_err(),
        "negative durations are refused"
    );
}

#[test]
fn go_cipher_names_map_to_rustls_suites() {
    let cases = [
        (
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        ),
        (
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        ),
        ("TLS_AES_256_GCM_SHA384", "TLS13_AES_256_GCM_SHA384"),
    ];
    for (go_name, rustls_name) in cases {
        let suite = cipher_suite(go_name).expect(go_name);
        assert_eq!(format!("{:?}", suite.suite()), rustls_name, "{go_name}");
    }
}

#[test]
fn a_repeated_flag_keeps_its_last_value_and_repeated_lists_append_like_pflag() {
    let args = args(&[
        "--metric-resolution=15s",
        "--kubelet-request-timeout=10s",
        "--kubelet-insecure-tls",
        "--metric-resolution=10s",
        "--kubelet-request-timeout=2s",
        "--kubelet-insecure-tls=false",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-allowed-names=aggregator",
    ]);
    assert_eq!(args.metric_resolution, Duration::from_secs(10));
    assert_eq!(args.kubelet_request_timeout, Duration::from_secs(2));
    assert!(!args.kubelet_insecure_tls);
    assert_eq!(
        args.requestheader_allowed_names,
        vec!["front-proxy-client".to_owned(), "aggregator".to_owned()]
    );
}
