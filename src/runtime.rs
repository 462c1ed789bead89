//! Wiring only: build the Kubernetes client, start the node and pod watches, wait for them to sync, then build
//! storage, the scraper, delegated auth and the API and serve until shutdown.
//!
//! Startup follows metrics-server's order (informers synced before the scrape loop and the listener start), so
//! a starting replica refuses connections rather than serving an empty cluster. Every long-lived task observes one
//! local shutdown signal, fired by the process signal or by the server failing, and is awaited under the grace
//! period. The scrape loop runs on its own runtime (see `ScrapeRuntime`). This module holds no logic of its own
//! beyond ordering and error mapping.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use rustls::pki_types::CertificateDer;
use secrecy::ExposeSecret;
use tokio::task::JoinSet;

use crate::api::Api;
use crate::cluster::index::{NodeSelector, SelectorError};
use crate::cluster::{ClusterView, Index, nodes, pods};
use crate::config::{Config, KubeletTls};
use crate::scrape::kubelet::{
    self, ClientIdentity, KubeletClient, KubeletClientConfig, ServerTrust, TokenSource,
};
use crate::scrape::{Heartbeat, Scraper};
use crate::server::{self, Health, ServerParts};
use crate::shutdown;
use crate::storage::{PodNames, Storage, StorageConfig};
use crate::telemetry::SelfMetrics;
use crate::{auth, time};

/// While waiting for the first node and pod lists, a progress line is logged this often.
const SYNC_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How often the sync flag is checked while waiting: short enough not to delay startup noticeably.
const SYNC_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// File descriptors kept free of kubelet connections: API-server watches and reviews, clients of our listener,
/// in-flight scrapes (up to `--kubelet-max-concurrency`), certificate and token files.
const RESERVED_FDS: usize = 2048;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// `--kubeconfig` could not be read or used.
    #[error("cannot load kubeconfig {path:?}: {source}")]
    Kubeconfig {
        /// The `--kubeconfig` path.
        path: String,
        /// kube's error.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// No kubeconfig and no in-cluster environment.
    #[error(
        "cannot find a cluster configuration (no --kubeconfig, KUBECONFIG or in-cluster service account): {0}"
    )]
    InferConfig(#[source] kube::config::InferConfigError),
    /// The Kubernetes client could not be built.
    #[error("cannot build the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    /// `--node-selector` does not parse.
    #[error(transparent)]
    NodeSelector(#[from] SelectorError),
    /// A file named by a flag or the kubeconfig could not be read.
    #[error("cannot read {path:?}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Inline kubeconfig data (`client-certificate-data`, `client-key-data`) is not base64.
    #[error("kubeconfig {field} is not valid base64: {source}")]
    KubeconfigData {
        /// The kubeconfig field.
        field: &'static str,
        /// The decoding error.
        #[source]
        source: base64::DecodeError,
    },
    /// The kubelet client configuration is unusable (CA, client certificate).
    #[error(transparent)]
    Kubelet(#[from] kubelet::BuildError),
    /// Delegated authentication/authorization could not be set up.
    #[error("delegated authentication setup failed: {0}")]
    Auth(#[from] auth::Error),
    /// The HTTPS server could not start.
    #[error(transparent)]
    Server(#[from] server::Error),
    /// The scrape loop's runtime could not be started (threads, I/O driver).
    #[error("cannot start the scrape runtime: {0}")]
    ScrapeRuntime(#[source] std::io::Error),
}

/// Storage names pods with the cluster index's `Arc`s, so each pod name is kept once in the process.
#[derive(Debug)]
struct IndexPodNames(Arc<Index>);

impl PodNames for IndexPodNames {
    fn pod_name(&self, namespace: &str, pod: &str) -> Option<Arc<str>> {
        self.0.pod_name(namespace, pod)
    }
}

/// The scrape loop's own tokio runtime, shut down without blocking when dropped (dropping a runtime inside an
/// async context would panic).
///
/// Scraping runs apart from serving so that a group of scrapes dispatched together (see `scrape`) never queues an
/// API request behind it on the same worker threads: the OS scheduler shares the cores between the two runtimes'
/// threads and a request's thread is woken at once. Both runtimes have one worker per core.
struct ScrapeRuntime(Option<tokio::runtime::Runtime>);

impl ScrapeRuntime {
    fn start() -> Result<Self, RuntimeError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("scrape")
            .enable_all()
            .build()
            .map_err(RuntimeError::ScrapeRuntime)?;
        Ok(ScrapeRuntime(Some(runtime)))
    }

    /// Runs `scraper` on the scrape runtime; the returned task (for the caller's runtime) ends when it does.
    fn spawn(
        &self,
        scraper: Scraper,
        shutdown: shutdown::Signal,
    ) -> impl Future<Output = ()> + use<> {
        let handle = self
            .0
            .as_ref()
            .map(|runtime| runtime.spawn(scraper.run(shutdown)));
        async move {
            if let Some(handle) = handle
                && let Err(error) = handle.await
                && error.is_panic()
            {
                tracing::error!(%error, "the scrape loop panicked");
            }
        }
    }
}

impl Drop for ScrapeRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Runs the server until `shutdown` fires (or the listener fails), then drains the background tasks.
///
/// # Errors
/// [`RuntimeError`] for anything that prevents startup, or the server's failure.
pub async fn run(config: Config, shutdown: shutdown::Signal) -> Result<(), RuntimeError> {
    // kube and the kubelet client both use rustls with ring; installing it as the process default means nothing
    // can pick another provider. A second install returns Err, which is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // A local signal that also fires when startup or the server fails, so background tasks always stop.
    let (stop, local) = shutdown::channel();
    let stop = Arc::new(stop);
    let forward = tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown.cancelled().await;
            stop.fire();
        }
    });
    let mut tasks = JoinSet::new();
    let mut scrape_runtime = None;
    let result = start_and_serve(&config, &local, &mut tasks, &mut scrape_runtime).await;
    stop.fire();
    forward.abort();
    drain(tasks, config.shutdown_grace).await;
    drop(scrape_runtime);
    result
}

/// metrics-server's startup order: client → watches → sync → storage, scraper, API → listener.
async fn start_and_serve(
    config: &Config,
    shutdown: &shutdown::Signal,
    tasks: &mut JoinSet<()>,
    scrape_runtime: &mut Option<ScrapeRuntime>,
) -> Result<(), RuntimeError> {
    let kube_config = kube_config(&config.args.kubeconfig).await?;
    let kubelet = KubeletClient::new(kubelet_client_config(config, &kube_config)?)?;
    let client = kube::Client::try_from(kube_config).map_err(RuntimeError::Client)?;
    let index = Arc::new(Index::new(NodeSelector::parse(&config.node_selector)?));
    let auth = auth::delegated::build(&config.args, client.clone(), shutdown.clone()).await?;
    let targets = nodes::TargetOptions::from_config(&config.kubelet);
    tasks.spawn(nodes::watch(
        client.clone(),
        index.clone(),
        targets,
        shutdown.clone(),
    ));
    tasks.spawn(pods::watch(client, index.clone(), shutdown.clone()));
    if !wait_for_sync(&index, shutdown).await {
        return Ok(());
    }

    let storage = Arc::new(Storage::with_pod_names(
        StorageConfig {
            resolution: config.resolution,
            staleness: config.staleness,
        },
        Arc::new(IndexPodNames(index.clone())),
    ));
    let metrics = Arc::new(SelfMetrics::with_resolution(config.resolution));
    let heartbeat = Arc::new(Heartbeat::default());
    let cluster: Arc<dyn ClusterView> = index;
    let scraper = Scraper {
        cluster: cluster.clone(),
        client: kubelet,
        sink: storage.clone(),
        metrics: metrics.clone(),
        heartbeat: heartbeat.clone(),
        resolution: config.resolution,
        max_concurrency: config.kubelet.max_concurrency,
    };
    let scrape_runtime = scrape_runtime.insert(ScrapeRuntime::start()?);
    tasks.spawn(scrape_runtime.spawn(scraper, shutdown.clone()));
    tasks.spawn(report_storage_points(
        storage.clone(),
        metrics.clone(),
        config.resolution,
        shutdown.clone(),
    ));
    let parts = ServerParts {
        api: Arc::new(Api::new(cluster.clone(), storage.clone())),
        authenticator: auth.authenticator,
        authorizer: auth.authorizer,
        health: Health::new(
            cluster,
            storage,
            heartbeat,
            config.resolution,
            shutdown.clone(),
        ),
        metrics,
    };
    server::serve(config, parts, shutdown.clone()).await?;
    Ok(())
}

/// Waits until both watches have listed once; `false` if shutdown started first.
async fn wait_for_sync(index: &Index, shutdown: &shutdown::Signal) -> bool {
    let started = tokio::time::Instant::now();
    let mut next_log = started + SYNC_LOG_INTERVAL;
    while !index.is_synced() {
        if tokio::time::Instant::now() >= next_log {
            tracing::info!(waited = ?started.elapsed(), "waiting for the node and pod watches to list");
            next_log += SYNC_LOG_INTERVAL;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(SYNC_POLL_INTERVAL) => {}
        }
    }
    let (nodes, pods) = index.len();
    tracing::info!(nodes, pods, "node and pod watches synced");
    true
}

/// Publishes the number of servable points once per resolution (metrics-server sets it after each store).
async fn report_storage_points(
    storage: Arc<Storage>,
    metrics: Arc<SelfMetrics>,
    every: Duration,
    shutdown: shutdown::Signal,
) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let (nodes, containers) = storage.point_counts(time::now_ms());
        metrics.storage_points(nodes, containers);
    }
}

/// Awaits every background task for at most `grace`, then aborts the rest.
async fn drain(mut tasks: JoinSet<()>, grace: Duration) {
    let all = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all).await.is_err() {
        tracing::warn!(
            ?grace,
            "background tasks did not stop within the grace period; aborting them"
        );
        tasks.abort_all();
    }
}

/// The cluster configuration: `--kubeconfig` when given, else `KUBECONFIG` / `~/.kube/config`, else in-cluster.
async fn kube_config(path: &str) -> Result<kube::Config, RuntimeError> {
    if path.is_empty() {
        return kube::Config::infer()
            .await
            .map_err(RuntimeError::InferConfig);
    }
    let error = |source| RuntimeError::Kubeconfig {
        path: path.to_owned(),
        source,
    };
    let kubeconfig = Kubeconfig::read_from(path).map_err(error)?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(error)
}

/// The kubelet client settings: the `--kubelet-*` flags, falling back to the cluster CA, token and client
/// certificate of the kube configuration (metrics-server copies its rest config the same way).
fn kubelet_client_config(
    config: &Config,
    kube: &kube::Config,
) -> Result<KubeletClientConfig, RuntimeError> {
    let flags = &config.kubelet;
    let trust = match &flags.tls {
        KubeletTls::ClusterCa => ServerTrust::Cas(
            kube.root_cert
                .iter()
                .flatten()
                .map(|der| CertificateDer::from(der.clone()))
                .collect(),
        ),
        KubeletTls::CaFile(path) => ServerTrust::Cas(kubelet::certificates_from_pem(&read(path)?)?),
        KubeletTls::InsecureSkipVerify => ServerTrust::InsecureSkipVerify,
        KubeletTls::PlainHttp => ServerTrust::PlainHttp,
    };
    let client_identity = match &flags.client_cert {
        Some(pair) => Some(ClientIdentity {
            cert_pem: read(&pair.cert)?,
            key_pem: read(&pair.key)?,
        }),
        None => kubeconfig_identity(&kube.auth_info)?,
    };
    Ok(KubeletClientConfig {
        trust,
        client_identity,
        token: token_source(&kube.auth_info),
        request_timeout: flags.request_timeout,
        max_body_bytes: usize::try_from(flags.max_body_bytes).unwrap_or(usize::MAX),
        // Every node is scraped once per resolution, so a connection idle for two is to a node that went away.
        idle_timeout: config.resolution.saturating_mul(2),
        max_idle_connections: idle_connection_budget(),
    })
}

/// How many idle kubelet connections fit under the soft open-files limit, keeping [`RESERVED_FDS`] free.
/// Unlimited when the limit is unknown or unlimited.
fn idle_connection_budget() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    open_files_soft_limit(&limits).map_or(usize::MAX, |limit| limit.saturating_sub(RESERVED_FDS))
}

/// The soft "Max open files" limit from `/proc/self/limits` text; `None` when absent or "unlimited".
fn open_files_soft_limit(limits: &str) -> Option<usize> {
    limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|value| value.parse().ok())
}

/// The bearer token of the kube configuration: inline, or a file re-read by the client (in-cluster).
fn token_source(auth: &AuthInfo) -> TokenSource {
    if let Some(token) = &auth.token {
        return TokenSource::Static(token.expose_secret().to_owned());
    }
    match &auth.token_file {
        Some(path) => TokenSource::File(PathBuf::from(path)),
        None => TokenSource::None,
    }
}

/// The kubeconfig's client certificate and key (inline base64 data or files), when both are present.
fn kubeconfig_identity(auth: &AuthInfo) -> Result<Option<ClientIdentity>, RuntimeError> {
    let cert = inline_or_file(
        auth.client_certificate_data.as_deref(),
        auth.client_certificate.as_deref(),
        "client-certificate-data",
    )?;
    let key_data = auth
        .client_key_data
        .as_ref()
        .map(|k| k.expose_secret().to_owned());
    let key = inline_or_file(
        key_data.as_deref(),
        auth.client_key.as_deref(),
        "client-key-data",
    )?;
    Ok(cert
        .zip(key)
        .map(|(cert_pem, key_pem)| ClientIdentity { cert_pem, key_pem }))
}

fn inline_or_file(
    data: Option<&str>,
    file: Option<&str>,
    field: &'static str,
) -> Result<Option<Vec<u8>>, RuntimeError> {
    if let Some(data) = data {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|source| RuntimeError::KubeconfigData { field, source })?;
        return Ok(Some(decoded));
    }
    file.map(|path| read(Path::new(path))).transpose()
}

fn read(path: &Path) -> Result<Vec<u8>, RuntimeError> {
    std::fs::read(path).map_err(|source| RuntimeError::ReadFile {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests;
