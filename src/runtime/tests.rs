#![allow(clippy::expect_used)] // A test fails by panicking; `expect` says which step broke.

use clap::Parser;

use super::*;
use crate::config::Args;

fn config(flags: &[&str]) -> Config {
    let argv = std::iter::once("resource-metrics-server").chain(flags.iter().copied());
    Config::try_from(Args::parse_from(argv)).expect("valid flags")
}

fn kube_config() -> kube::Config {
    let mut kube = kube::Config::new("https://127.0.0.1:6443".parse().expect("uri"));
    kube.root_cert = Some(vec![b"cluster-ca-der".to_vec()]);
    kube.auth_info.token = Some("sa-token".to_owned().into());
    kube
}

#[test]
fn kubelet_settings_default_to_the_cluster_ca_and_token() {
    let settings = kubelet_client_config(&config(&[]), &kube_config()).expect("settings");
    let want = vec![CertificateDer::from(b"cluster-ca-der".to_vec())];
    assert_eq!(settings.trust, ServerTrust::Cas(want));
    assert_eq!(settings.token, TokenSource::Static("sa-token".to_owned()));
    assert!(settings.client_identity.is_none());
    assert_eq!(settings.request_timeout, Duration::from_secs(10));
    assert_eq!(
        settings.idle_timeout,
        Duration::from_secs(120),
        "two resolutions"
    );
}

#[test]
fn kubelet_flags_override_the_cluster_settings() {
    let insecure = config(&["--kubelet-insecure-tls"]);
    let settings = kubelet_client_config(&insecure, &kube_config()).expect("settings");
    assert_eq!(settings.trust, ServerTrust::InsecureSkipVerify);
    let plain = config(&[
        "--deprecated-kubelet-completely-insecure",
        "--kubelet-port=10255",
    ]);
    let settings = kubelet_client_config(&plain, &kube_config()).expect("settings");
    assert_eq!(settings.trust, ServerTrust::PlainHttp);
}

#[test]
fn an_in_cluster_token_file_is_passed_as_a_file() {
    let mut kube = kube_config();
    kube.auth_info.token = None;
    kube.auth_info.token_file =
        Some("/var/run/secrets/kubernetes.io/serviceaccount/token".to_owned());
    let settings = kubelet_client_config(&config(&[]), &kube).expect("settings");
    let want = PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/token");
    assert_eq!(settings.token, TokenSource::File(want));
}

#[test]
fn kubeconfig_client_certificates_are_decoded_from_base64() {
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let mut auth = AuthInfo {
        client_certificate_data: Some(encode("CERT")),
        client_key_data: Some(encode("KEY").into()),
        ..AuthInfo::default()
    };
    let identity = kubeconfig_identity(&auth)
        .expect("decodes")
        .expect("both present");
    assert_eq!(
        (identity.cert_pem, identity.key_pem),
        (b"CERT".to_vec(), b"KEY".to_vec())
    );
    auth.client_key_data = Some("not base64!".to_owned().into());
    assert!(matches!(
        kubeconfig_identity(&auth),
        Err(RuntimeError::KubeconfigData { .. })
    ));
    assert!(
        kubeconfig_identity(&AuthInfo::default())
            .expect("none")
            .is_none()
    );
}

#[test]
fn the_open_files_limit_is_read_from_proc_limits() {
    struct Case {
        name: &'static str,
        text: &'static str,
        want: Option<usize>,
    }
    let cases = [
        Case {
            name: "a numeric soft limit",
            text: "Max cpu time              unlimited            unlimited            seconds\n\
                   Max open files            20000                20000                files\n",
            want: Some(20_000),
        },
        Case {
            name: "unlimited",
            text: "Max open files            unlimited            unlimited            files\n",
            want: None,
        },
        Case {
            name: "absent",
            text: "",
            want: None,
        },
    ];
    for case in cases {
        assert_eq!(open_files_soft_limit(case.text), case.want, "{}", case.name);
    }
}
