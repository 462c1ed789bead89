//! Builds the delegated authenticator and authorizer from flags and the `extension-apiserver-authentication`
//! ConfigMap, and keeps their trust material current.
//!
//! Sources, as in `k8s.io/apiserver`'s delegating options: when `--requestheader-client-ca-file` is set, every
//! requestheader setting comes from the flags; otherwise all of them come from the ConfigMap (`kube-system/
//! extension-apiserver-authentication`, keys `requestheader-client-ca-file`, `requestheader-allowed-names`,
//! `requestheader-username-headers`, `requestheader-group-headers`, `requestheader-extra-headers-prefix`,
//! `requestheader-uid-headers`; lists are JSON string arrays). Likewise `--client-ca-file` or the ConfigMap's
//! `client-ca-file`. A background task watches the ConfigMap (CA rotation) and re-reads the flag files every
//! [`FILE_RELOAD_INTERVAL`], swapping a new [`Trust`] in atomically; it stops on shutdown.
//!
//! This module owns wiring and refresh only; verification and header mapping live in the sibling modules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::{WatchStreamExt, watcher};

use super::access_review::{DecisionTtls, SubjectAccessReviewer};
use super::chain::{DelegatingAuthenticator, Trust, TrustStore};
use super::front_proxy::RequestHeaderConfig;
use super::token_review::TokenReviewer;
use super::x509::CaBundle;
use super::{Authenticator, Authorizer, Error};
use crate::config::Args;
use crate::shutdown::Signal;

/// Namespace of the authentication ConfigMap the kube-apiserver publishes.
pub const CONFIGMAP_NAMESPACE: &str = "kube-system";
/// Name of the authentication ConfigMap the kube-apiserver publishes.
pub const CONFIGMAP_NAME: &str = "extension-apiserver-authentication";
/// How often CA files named by flags are re-read; the apiserver's file-content controllers poll at this rate,
/// so a rotated front-proxy CA is picked up within a minute.
pub const FILE_RELOAD_INTERVAL: Duration = Duration::from_secs(60);

/// The delegated authenticator and authorizer the server runs for every request.
#[derive(Clone)]
pub struct Delegated {
    /// Front-proxy, client-certificate and bearer-token authentication.
    pub authenticator: Arc<dyn Authenticator>,
    /// SubjectAccessReview authorization.
    pub authorizer: Arc<dyn Authorizer>,
}

/// Trust material read from the ConfigMap.
#[derive(Debug, Clone, Default)]
pub struct ConfigMapTrust {
    /// From `client-ca-file`.
    pub client_ca: Option<CaBundle>,
    /// From the `requestheader-*` keys; `None` when `requestheader-client-ca-file` is absent or empty.
    pub front_proxy: Option<RequestHeaderConfig>,
}

/// Why the ConfigMap's content cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigMapError {
    /// A CA bundle key holds no usable PEM.
    #[error("key {key}: {source}")]
    Bundle {
        /// The ConfigMap key.
        key: &'static str,
        /// The parse error.
        #[source]
        source: super::x509::BundleError,
    },
    /// A list key is not a JSON array of strings.
    #[error("key {key}: not a JSON string array: {source}")]
    List {
        /// The ConfigMap key.
        key: &'static str,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

/// CA bundles named by flags, with their paths for reloading.
#[derive(Debug, Clone, Default)]
struct FlagTrust {
    /// `--requestheader-client-ca-file` and the requestheader flags.
    front_proxy: Option<(PathBuf, RequestHeaderConfig)>,
    /// `--client-ca-file`.
    client_ca: Option<(PathBuf, CaBundle)>,
}

/// Everything the refresh task needs to recompute [`Trust`].
struct Refresher {
    store: TrustStore,
    flags: FlagTrust,
    configmap: Option<ConfigMapTrust>,
}

/// Builds the delegated authenticator and authorizer.
///
/// Reads the ConfigMap unless `--authentication-skip-lookup` (or both CA flags are set); uses the
/// `--authentication-kubeconfig` / `--authorization-kubeconfig` clients when given, else `client`; logs the
/// requestheader CA source and allowed names; spawns the refresh task, which stops when `shutdown` fires.
///
/// # Errors
/// [`Error::Setup`] when a CA file or kubeconfig cannot be loaded, or the ConfigMap cannot be read (unless
/// `--authentication-tolerate-lookup-failure`) or holds invalid data.
pub async fn build(
    args: &Args,
    client: kube::Client,
    shutdown: Signal,
) -> Result<Delegated, Error> {
    let authn_client = client_for(
        &args.authentication_kubeconfig,
        &client,
        "--authentication-kubeconfig",
    )
    .await?;
    let authz_client = client_for(
        &args.authorization_kubeconfig,
        &client,
        "--authorization-kubeconfig",
    )
    .await?;

    let flags = FlagTrust::load(args)?;
    let lookup = !args.authentication_skip_lookup
        && (flags.front_proxy.is_none() || flags.client_ca.is_none());
    let configmap = if lookup {
        match read_configmap(&authn_client).await {
            Ok(trust) => trust,
            Err(error) if args.authentication_tolerate_lookup_failure => {
                tracing::warn!(
                    %error,
                    "cannot read the authentication ConfigMap; continuing without it \
                     (--authentication-tolerate-lookup-failure); it is watched and used once readable"
                );
                None
            }
            Err(error) => return Err(error),
        }
    } else {
        None
    };

    let store: TrustStore = Arc::new(ArcSwap::from_pointee(Trust::default()));
    let refresher = Refresher {
        store: store.clone(),
        flags,
        configmap,
    };
    refresher.publish();
    refresher.log_sources();
    if lookup || refresher.flags.has_files() {
        tokio::spawn(refresher.run(authn_client.clone(), lookup, shutdown));
    }

    let tokens = TokenReviewer::new(authn_client, args.authentication_token_webhook_cache_ttl);
    let ttls = DecisionTtls {
        allowed: args.authorization_webhook_cache_authorized_ttl,
        denied: args.authorization_webhook_cache_unauthorized_ttl,
    };
    Ok(Delegated {
        authenticator: Arc::new(DelegatingAuthenticator::new(store, tokens)),
        authorizer: Arc::new(SubjectAccessReviewer::new(authz_client, ttls)),
    })
}

/// Parses the ConfigMap's data.
///
/// # Errors
/// [`ConfigMapError`] naming the key whose PEM or JSON is invalid.
pub fn parse_configmap(data: &BTreeMap<String, String>) -> Result<ConfigMapTrust, ConfigMapError> {
    let bundle = |key: &'static str| -> Result<Option<CaBundle>, ConfigMapError> {
        match data.get(key).filter(|pem| !pem.trim().is_empty()) {
            Some(pem) => CaBundle::from_pem(pem.as_bytes())
                .map(Some)
                .map_err(|source| ConfigMapError::Bundle { key, source }),
            None => Ok(None),
        }
    };
    let list = |key: &'static str| -> Result<Vec<String>, ConfigMapError> {
        match data.get(key).filter(|json| !json.trim().is_empty()) {
            // Go unmarshals `null` into an empty slice; so do we.
            Some(json) => serde_json::from_str::<Option<Vec<String>>>(json)
                .map(Option::unwrap_or_default)
                .map_err(|source| ConfigMapError::List { key, source }),
            None => Ok(Vec::new()),
        }
    };
    let front_proxy = match bundle("requestheader-client-ca-file")? {
        Some(ca) => Some(RequestHeaderConfig {
            ca,
            allowed_names: list("requestheader-allowed-names")?,
            username_headers: list("requestheader-username-headers")?,
            group_headers: list("requestheader-group-headers")?,
            extra_header_prefixes: list("requestheader-extra-headers-prefix")?,
            uid_headers: list("requestheader-uid-headers")?,
        }),
        None => None,
    };
    Ok(ConfigMapTrust {
        client_ca: bundle("client-ca-file")?,
        front_proxy,
    })
}

/// The client for a review kubeconfig flag, or `default` when the flag is empty.
async fn client_for(path: &str, default: &kube::Client, flag: &str) -> Result<kube::Client, Error> {
    if path.is_empty() {
        return Ok(default.clone());
    }
    let setup = |what: &str, error: &dyn std::fmt::Display| {
        Error::Setup(format!("{flag} {path}: {what}: {error}"))
    };
    let kubeconfig =
        kube::config::Kubeconfig::read_from(path).map_err(|e| setup("cannot read", &e))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| setup("invalid kubeconfig", &e))?;
    kube::Client::try_from(config).map_err(|e| setup("cannot build a client", &e))
}

/// Reads the ConfigMap once: `Ok(None)` when it does not exist (the apiserver treats that as "nothing to add").
async fn read_configmap(client: &kube::Client) -> Result<Option<ConfigMapTrust>, Error> {
    let api = kube::Api::<ConfigMap>::namespaced(client.clone(), CONFIGMAP_NAMESPACE);
    let configmap = match api.get_opt(CONFIGMAP_NAME).await {
        Ok(Some(configmap)) => configmap,
        Ok(None) => {
            tracing::warn!(
                "ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME} not found; no CA from the cluster"
            );
            return Ok(None);
        }
        Err(kube::Error::Api(status)) if status.code == 403 => {
            return Err(Error::Setup(format!(
                "cannot read ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME}: {}; usually fixed by binding Role \
                 extension-apiserver-authentication-reader in {CONFIGMAP_NAMESPACE} to this service account",
                status.message
            )));
        }
        Err(error) => {
            return Err(Error::Setup(format!(
                "cannot read ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME}: {error}"
            )));
        }
    };
    parse_configmap(&configmap.data.unwrap_or_default())
        .map(Some)
        .map_err(|error| {
            Error::Setup(format!(
                "ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME}: {error}"
            ))
        })
}

/// Reads and parses a PEM CA bundle file.
fn load_bundle(path: &Path, flag: &str) -> Result<CaBundle, Error> {
    let pem =
        std::fs::read(path).map_err(|e| Error::Setup(format!("{flag} {}: {e}", path.display())))?;
    CaBundle::from_pem(&pem).map_err(|e| Error::Setup(format!("{flag} {}: {e}", path.display())))
}

// === impl FlagTrust ===

impl FlagTrust {
    fn load(args: &Args) -> Result<Self, Error> {
        let front_proxy = if args.requestheader_client_ca_file.is_empty() {
            None
        } else {
            let path = PathBuf::from(&args.requestheader_client_ca_file);
            let ca = load_bundle(&path, "--requestheader-client-ca-file")?;
            let config = RequestHeaderConfig {
                ca,
                allowed_names: non_empty(&args.requestheader_allowed_names),
                username_headers: non_empty(&args.requestheader_username_headers),
                group_headers: non_empty(&args.requestheader_group_headers),
                extra_header_prefixes: non_empty(&args.requestheader_extra_headers_prefix),
                uid_headers: non_empty(&args.requestheader_uid_headers),
            };
            Some((path, config))
        };
        let client_ca = if args.client_ca_file.is_empty() {
            None
        } else {
            let path = PathBuf::from(&args.client_ca_file);
            let ca = load_bundle(&path, "--client-ca-file")?;
            Some((path, ca))
        };
        Ok(FlagTrust {
            front_proxy,
            client_ca,
        })
    }

    fn has_files(&self) -> bool {
        self.front_proxy.is_some() || self.client_ca.is_some()
    }

    /// Re-reads the CA files; true when a bundle changed. An unreadable or invalid file keeps the previous bundle.
    fn reload(&mut self) -> bool {
        let mut changed = false;
        let mut reload_one = |path: &Path, current: &mut CaBundle, flag: &str| match std::fs::read(
            path,
        ) {
            Ok(pem) if current.same_pem(&pem) => {}
            Ok(pem) => match CaBundle::from_pem(&pem) {
                Ok(bundle) => {
                    tracing::info!(flag, path = %path.display(), certificates = bundle.len(), "CA file reloaded");
                    *current = bundle;
                    changed = true;
                }
                Err(error) => {
                    tracing::warn!(flag, path = %path.display(), %error, "CA file invalid; keeping the old")
                }
            },
            Err(error) => {
                tracing::warn!(flag, path = %path.display(), %error, "CA file unreadable; keeping the old")
            }
        };
        if let Some((path, config)) = &mut self.front_proxy {
            reload_one(path, &mut config.ca, "--requestheader-client-ca-file");
        }
        if let Some((path, bundle)) = &mut self.client_ca {
            reload_one(path, bundle, "--client-ca-file");
        }
        changed
    }
}

/// Empty flag entries (`--requestheader-allowed-names=`) mean "none", not a name "".
fn non_empty(values: &[String]) -> Vec<String> {
    values
        .iter()
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

// === impl Refresher ===

impl Refresher {
    /// Computes the trust in force (flags win per source) and swaps it in.
    fn publish(&self) {
        let from_configmap = self.configmap.as_ref();
        let front_proxy = match &self.flags.front_proxy {
            Some((_, config)) => Some(config.clone()),
            None => from_configmap.and_then(|cm| cm.front_proxy.clone()),
        };
        let client_ca = match &self.flags.client_ca {
            Some((_, bundle)) => Some(bundle.clone()),
            None => from_configmap.and_then(|cm| cm.client_ca.clone()),
        };
        self.store.store(Arc::new(Trust {
            front_proxy,
            client_ca,
        }));
    }

    /// Logs where the requestheader and client CAs come from: front-proxy misconfiguration is the most common
    /// reason the aggregator's requests fail, so this is stated plainly at startup and on every change.
    fn log_sources(&self) {
        let configmap = format!("ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME}");
        let trust = self.store.load();
        match (&trust.front_proxy, &self.flags.front_proxy) {
            (Some(config), from_flag) => {
                let source = match from_flag {
                    Some((path, _)) => format!("file {}", path.display()),
                    None => configmap.clone(),
                };
                let allowed_names: &dyn std::fmt::Debug = if config.allowed_names.is_empty() {
                    &"<any>"
                } else {
                    &config.allowed_names
                };
                tracing::info!(
                    %source,
                    certificates = config.ca.len(),
                    ?allowed_names,
                    username_headers = ?config.username_headers,
                    group_headers = ?config.group_headers,
                    extra_header_prefixes = ?config.extra_header_prefixes,
                    uid_headers = ?config.uid_headers,
                    "front-proxy (requestheader) authentication enabled"
                );
            }
            (None, _) => tracing::warn!(
                "front-proxy (requestheader) authentication disabled: no --requestheader-client-ca-file and no \
                 requestheader-client-ca-file in {configmap}; requests proxied by kube-aggregator will be rejected"
            ),
        }
        match (&trust.client_ca, &self.flags.client_ca) {
            (Some(bundle), Some((path, _))) => tracing::info!(
                source = %format!("file {}", path.display()),
                certificates = bundle.len(),
                "client-certificate authentication enabled"
            ),
            (Some(bundle), None) => tracing::info!(
                source = %configmap,
                certificates = bundle.len(),
                "client-certificate authentication enabled"
            ),
            (None, _) => tracing::info!("client-certificate authentication disabled: no client CA"),
        }
    }

    /// Watches the ConfigMap (when `watch_configmap`) and re-reads flag files until `shutdown` fires.
    async fn run(mut self, client: kube::Client, watch_configmap: bool, shutdown: Signal) {
        let api = kube::Api::<ConfigMap>::namespaced(client, CONFIGMAP_NAMESPACE);
        let config = watcher::Config::default().fields(&format!("metadata.name={CONFIGMAP_NAME}"));
        let mut events = if watch_configmap {
            watcher(api, config).default_backoff().boxed()
        } else {
            futures::stream::pending().boxed()
        };
        let mut files = tokio::time::interval(FILE_RELOAD_INTERVAL);
        files.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        files.tick().await; // The first tick is immediate; the files were just read.
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                event = events.next() => match event {
                    Some(Ok(watcher::Event::Apply(configmap) | watcher::Event::InitApply(configmap))) => {
                        self.apply_configmap(&configmap);
                    }
                    Some(Ok(watcher::Event::Delete(_))) => tracing::warn!(
                        "ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME} deleted; keeping the last CAs seen"
                    ),
                    Some(Ok(watcher::Event::Init | watcher::Event::InitDone)) => {}
                    Some(Err(error)) => tracing::warn!(%error, "watching the authentication ConfigMap failed; retrying"),
                    None => break,
                },
                _ = files.tick(), if self.flags.has_files() => {
                    if self.flags.reload() {
                        self.publish();
                        self.log_sources();
                    }
                }
            }
        }
        tracing::debug!("authentication trust refresh stopped");
    }

    fn apply_configmap(&mut self, configmap: &ConfigMap) {
        let empty = BTreeMap::new();
        match parse_configmap(configmap.data.as_ref().unwrap_or(&empty)) {
            Ok(trust) => {
                if !self
                    .configmap
                    .as_ref()
                    .is_some_and(|old| old.same_as(&trust))
                {
                    self.configmap = Some(trust);
                    self.publish();
                    self.log_sources();
                }
            }
            Err(error) => tracing::warn!(
                %error,
                "ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME} has invalid data; keeping the last valid CAs"
            ),
        }
    }
}

// === impl ConfigMapTrust ===

impl ConfigMapTrust {
    /// Same bundles and settings (used to avoid re-logging an unchanged ConfigMap on every relist).
    fn same_as(&self, other: &ConfigMapTrust) -> bool {
        let same_bundle = |a: &Option<CaBundle>, b: &Option<CaBundle>| match (a, b) {
            (Some(a), Some(b)) => a.same_as(b),
            (None, None) => true,
            _ => false,
        };
        let same_proxy = match (&self.front_proxy, &other.front_proxy) {
            (Some(a), Some(b)) => {
                a.ca.same_as(&b.ca)
                    && a.allowed_names == b.allowed_names
                    && a.username_headers == b.username_headers
                    && a.group_headers == b.group_headers
                    && a.extra_header_prefixes == b.extra_header_prefixes
                    && a.uid_headers == b.uid_headers
            }
            (None, None) => true,
            _ => false,
        };
        same_proxy && same_bundle(&self.client_ca, &other.client_ca)
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::expect_used,
        reason = "test fixtures panic with a message when they cannot be built"
    )]

    use clap::Parser;

    use super::*;

    fn ca_pem(name: &str) -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .self_signed(&rcgen::KeyPair::generate().expect("key"))
            .expect("ca")
            .pem()
    }

    #[test]
    fn flag_files_reload_only_when_changed_and_valid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("client-ca.crt");
        let (first, second) = (ca_pem("first"), ca_pem("second"));
        std::fs::write(&path, &first).expect("write");
        let path_arg = path.to_str().expect("utf-8 path");
        let args = Args::parse_from(["resource-metrics-server", "--client-ca-file", path_arg]);
        let mut flags = FlagTrust::load(&args).expect("loaded");
        let current = |flags: &FlagTrust| {
            flags
                .client_ca
                .as_ref()
                .map(|(_, bundle)| bundle.clone())
                .expect("set")
        };

        assert!(!flags.reload(), "unchanged file");
        std::fs::write(&path, &second).expect("write");
        assert!(flags.reload(), "rotated file");
        assert!(current(&flags).same_pem(second.as_bytes()));
        std::fs::write(&path, "not a certificate").expect("write");
        assert!(!flags.reload(), "invalid file is ignored");
        assert!(
            current(&flags).same_pem(second.as_bytes()),
            "the last valid bundle stays"
        );
        std::fs::remove_file(&path).expect("remove");
        assert!(!flags.reload(), "missing file is ignored");
    }
}
