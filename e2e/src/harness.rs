//! `Cluster::start(spec)`: one call bringing up certificates, the fake control plane, the fake kubelets and the
//! kubeconfigs, plus helpers to spawn the real server binary (wait for `/readyz`, kill on drop), run real kubectl
//! with an isolated cache and HOME, and poll with a bounded deadline.
//!
//! Wiring only; behaviour lives in the modules it wires. It must not link the server crate.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::process::{Child, Command};

use crate::certs::{CertError, CertifiedKey, FRONT_PROXY_CLIENT_CN, Pki, Signer};
use crate::control_plane::{
    Availability, ConfigMap, ControlPlane, ControlPlaneError, ControlPlaneOptions, Rule, Subject,
    UserInfo,
};
use crate::https;
use crate::kubelet::{FleetOptions, KubeletError, KubeletFleet};
use crate::model::{ClusterSpec, Model, ModelError};
use crate::tls::{self, TlsError};

/// Environment variable naming the server binary explicitly.
pub const SERVER_BIN_ENV: &str = "RMS_BIN";

/// Name of the server binary.
pub const SERVER_BIN_NAME: &str = "resource-metrics-server";

/// Where the base image keeps versioned kubectl binaries (`kubectl.1.27` … `kubectl.1.33`).
pub const KUBECTL_DIR: &str = "/usr/lib/google-cloud-sdk/bin";

/// User name of the server's service account, as a real deployment's token would map to.
pub const SERVER_USER: &str = "system:serviceaccount:kube-system:metrics-server";

/// User name of the admin kubeconfig.
pub const ADMIN_USER: &str = "kubernetes-admin";

/// Kubelet certificates list every node address as a SAN up to this many nodes; bigger fleets are scraped with
/// `--kubelet-insecure-tls` anyway and a certificate with tens of thousands of SANs helps nobody.
const MAX_KUBELET_SANS: usize = 1_000;

/// Addresses of not-yet-added nodes included in the kubelet certificate (see [`MAX_KUBELET_SANS`]).
const SPARE_KUBELET_SANS: u32 = 32;

/// Attempts at finding a free block of loopback addresses for the kubelets.
const ADDRESS_ATTEMPTS: u32 = 8;

/// How long one kubectl invocation may run.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(60);

/// Poll interval of [`eventually`] and readiness waits.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// Errors of the harness.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// Certificate generation.
    #[error(transparent)]
    Certs(#[from] CertError),
    /// TLS configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Model construction or mutation.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Fake kubelets.
    #[error(transparent)]
    Kubelet(#[from] KubeletError),
    /// Fake control plane.
    #[error(transparent)]
    ControlPlane(#[from] ControlPlaneError),
    /// Files, processes.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The server binary was not found.
    #[error("server binary not found at {0} (build it first or set RMS_BIN)")]
    ServerBinaryMissing(PathBuf),
    /// A wait ran out of time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The deadline.
        after: Duration,
    },
    /// The server exited early.
    #[error("server exited with {status} before becoming ready; log:\n{log}")]
    ServerExited {
        /// Exit status.
        status: std::process::ExitStatus,
        /// Its output.
        log: String,
    },
    /// No kubectl binary is available.
    #[error("no kubectl binary found ({0})")]
    KubectlMissing(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// Knobs of [`Cluster::start_with`]; `Default` suits most tests.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Start in-process fake kubelets for every node (false when another process serves them, e.g. the scale
    /// benchmark's `fake-kubelets`).
    pub start_kubelets: bool,
    /// Interval of the aggregator's availability probe (real aggregators: ~30 s).
    pub probe_interval: Duration,
    /// Kubelets answer 401 unless the request carries the server's bearer token.
    pub kubelets_require_token: bool,
    /// Per-pod stats lag of the kubelets, ms.
    pub max_stats_lag_ms: i64,
    /// SubjectAccessReview rules; `None` for the defaults ([`Cluster::default_rules`]).
    pub rules: Option<Vec<Rule>>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            start_kubelets: true,
            probe_interval: Duration::from_secs(1),
            kubelets_require_token: true,
            max_stats_lag_ms: 500,
            rules: None,
        }
    }
}

/// A running fake cluster. Drop it to stop everything it started.
pub struct Cluster {
    model: Model,
    pki: Pki,
    control_plane: ControlPlane,
    kubelets: KubeletFleet,
    dir: tempfile::TempDir,
    admin_kubeconfig: PathBuf,
    server_kubeconfig: PathBuf,
    admin_token: String,
    server_token: String,
    front_proxy_client: CertifiedKey,
    calls: AtomicU64,
}

/// A spawned server process; killed when dropped.
pub struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    log_path: PathBuf,
}

/// A `fake-kubelets` child process serving a slice of a uniform cluster; killed when dropped.
pub struct KubeletProcess {
    child: Child,
}

/// Output of one kubectl run.
#[derive(Debug, Clone)]
pub struct KubectlOutput {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

// === impl Cluster ===

impl Cluster {
    /// Starts a cluster from `spec` with default options.
    ///
    /// # Errors
    /// [`HarnessError`] when any part fails to start.
    pub async fn start(spec: ClusterSpec) -> Result<Self, HarnessError> {
        Self::start_with(spec, ClusterOptions::default()).await
    }

    /// Starts a cluster from `spec`.
    ///
    /// # Errors
    /// [`HarnessError`] when any part fails to start.
    pub async fn start_with(
        spec: ClusterSpec,
        options: ClusterOptions,
    ) -> Result<Self, HarnessError> {
        let pki = Pki::new()?;
        let admin_token = token("admin");
        let server_token = token("metrics-server");
        let front_proxy_client = pki.issue_client(
            "front-proxy-client",
            FRONT_PROXY_CLIENT_CN,
            None,
            Signer::FrontProxy,
        )?;

        let (model, kubelets) = start_kubelets(&pki, spec, &options, &server_token).await?;

        let apiserver_cert = pki.issue_server(
            "apiserver",
            &[
                "localhost".into(),
                "127.0.0.1".into(),
                "kubernetes".into(),
                "kubernetes.default.svc".into(),
            ],
        )?;
        let serving = tls::server_config(&apiserver_cert, &[pki.cluster_ca_der()])?;
        let identities = vec![
            (
                admin_token.clone(),
                UserInfo::new(ADMIN_USER, &["system:masters", "system:authenticated"]),
            ),
            (
                server_token.clone(),
                UserInfo::new(
                    SERVER_USER,
                    &[
                        "system:serviceaccounts",
                        "system:serviceaccounts:kube-system",
                        "system:authenticated",
                    ],
                ),
            ),
        ];
        let control_plane = ControlPlane::start(
            model.clone(),
            ControlPlaneOptions {
                bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                serving: Arc::new(serving),
                front_proxy_client: Arc::new(tls::insecure_client_config(Some(
                    &front_proxy_client,
                ))?),
                identities,
                rules: options.rules.clone().unwrap_or_else(Self::default_rules),
                configmaps: vec![auth_configmap(&pki)],
                probe_interval: options.probe_interval,
            },
        )
        .await?;

        let dir = tempfile::Builder::new()
            .prefix("e2e-cluster-")
            .tempdir()
            .map_err(io("creating the cluster directory"))?;
        let admin_kubeconfig = dir.path().join("admin.kubeconfig");
        let server_kubeconfig = dir.path().join("server.kubeconfig");
        write_kubeconfig(
            &admin_kubeconfig,
            &control_plane.url(),
            pki.cluster_ca_path(),
            ADMIN_USER,
            &admin_token,
        )?;
        write_kubeconfig(
            &server_kubeconfig,
            &control_plane.url(),
            pki.cluster_ca_path(),
            "metrics-server",
            &server_token,
        )?;

        Ok(Self {
            model,
            pki,
            control_plane,
            kubelets,
            dir,
            admin_kubeconfig,
            server_kubeconfig,
            admin_token,
            server_token,
            front_proxy_client,
            calls: AtomicU64::new(0),
        })
    }

    /// Default SubjectAccessReview rules: `system:masters` and the server's own service account may do
    /// everything; anyone else gets no opinion (denied).
    pub fn default_rules() -> Vec<Rule> {
        vec![
            Rule::allow_all(Subject::Group("system:masters".into())),
            Rule::allow_all(Subject::User(SERVER_USER.into())),
        ]
    }

    /// The shared model: change it to change what kubelets report and what watches see.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The fake control plane (request log, review counters, availability, identities, rules).
    pub fn control_plane(&self) -> &ControlPlane {
        &self.control_plane
    }

    /// The in-process fake kubelets (faults, request counts, Authorization seen); empty when started with
    /// `start_kubelets: false` (start single nodes with [`KubeletFleet::start_node`]).
    pub fn kubelets(&self) -> &KubeletFleet {
        &self.kubelets
    }

    /// The certificates.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The cluster's scratch directory (kubeconfigs, server logs, kubectl caches).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Admin kubeconfig (bearer token over HTTPS, `system:masters`).
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// The server's kubeconfig (service-account-like token).
    pub fn server_kubeconfig(&self) -> &Path {
        &self.server_kubeconfig
    }

    /// The admin bearer token.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The server's bearer token (also what kubelets require).
    pub fn server_token(&self) -> &str {
        &self.server_token
    }

    /// The aggregator's front-proxy client certificate (to call the server directly as the aggregator would).
    pub fn front_proxy_client(&self) -> &CertifiedKey {
        &self.front_proxy_client
    }

    /// Adds a bearer-token user (for kubeconfigs of non-admin users) and returns a kubeconfig for it.
    ///
    /// # Errors
    /// [`HarnessError::Io`] writing the kubeconfig.
    pub fn add_user(&self, name: &str, groups: &[&str]) -> Result<PathBuf, HarnessError> {
        let user_token = token(name);
        self.control_plane
            .add_identity(user_token.clone(), UserInfo::new(name, groups));
        let path = self
            .dir
            .path()
            .join(format!("{}.kubeconfig", name.replace([':', '/'], "_")));
        write_kubeconfig(
            &path,
            &self.control_plane.url(),
            self.pki.cluster_ca_path(),
            name,
            &user_token,
        )?;
        Ok(path)
    }

    /// The flags the server is started with by [`Cluster::start_server`] (before `extra` flags).
    pub fn server_args(&self, secure_port: u16) -> Vec<String> {
        let cert_dir = self.dir.path().join("server-certs");
        vec![
            format!("--kubeconfig={}", self.server_kubeconfig.display()),
            format!("--secure-port={secure_port}"),
            "--bind-address=127.0.0.1".into(),
            format!("--cert-dir={}", cert_dir.display()),
            "--metric-resolution=10s".into(),
            // At most 0.9 × the resolution (metrics-server's invariant).
            "--kubelet-request-timeout=5s".into(),
            "--kubelet-insecure-tls".into(),
            "--kubelet-preferred-address-types=InternalIP".into(),
            "--kubelet-use-node-status-port".into(),
            format!(
                "--requestheader-client-ca-file={}",
                self.pki.front_proxy_ca_path().display()
            ),
            format!("--requestheader-allowed-names={FRONT_PROXY_CLIENT_CN}"),
        ]
    }

    /// Spawns the server binary ([`server_binary`]) with [`Cluster::server_args`] plus `extra` (later flags win),
    /// waits for `/readyz` to answer 200 within `ready_within`, then points the aggregator at it.
    ///
    /// # Errors
    /// [`HarnessError::ServerBinaryMissing`], [`HarnessError::ServerExited`], [`HarnessError::Timeout`].
    pub async fn start_server(
        &self,
        extra: &[&str],
        ready_within: Duration,
    ) -> Result<ServerProcess, HarnessError> {
        let binary = server_binary();
        if !binary.exists() {
            return Err(HarnessError::ServerBinaryMissing(binary));
        }
        let port = free_port()?;
        let mut args = self.server_args(port);
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let log_path = self.dir.path().join(format!("server-{n}.log"));
        let log = std::fs::File::create(&log_path).map_err(io("creating the server log"))?;
        let log_err = log.try_clone().map_err(io("duplicating the server log"))?;
        let child = Command::new(&binary)
            .args(&args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true)
            .spawn()
            .map_err(io(format!("spawning {}", binary.display())))?;
        let mut server = ServerProcess {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            log_path,
        };
        server.wait_ready(ready_within).await?;
        self.control_plane.set_metrics_backend(Some(server.addr));
        Ok(server)
    }

    /// Waits until discovery lists `metrics.k8s.io` (the availability probe passed).
    ///
    /// # Errors
    /// [`HarnessError::Timeout`].
    pub async fn wait_metrics_available(&self, within: Duration) -> Result<(), HarnessError> {
        eventually(
            "the metrics APIService to become available",
            within,
            || async { self.control_plane.metrics_available().then_some(()) },
        )
        .await
    }

    /// Forces or restores the metrics APIService availability.
    pub fn set_metrics_availability(&self, availability: Availability) {
        self.control_plane.set_metrics_availability(availability);
    }

    /// `GET path` on the control plane as admin with `accept`; returns status and body text.
    ///
    /// # Errors
    /// [`HarnessError::Io`] for transport failures.
    pub async fn api_get(&self, path: &str, accept: &str) -> Result<(u16, String), HarnessError> {
        let config = Arc::new(tls::client_config(self.pki.cluster_ca_der(), None)?);
        let auth = format!("Bearer {}", self.admin_token);
        let (status, _, body) = https::get(
            self.control_plane.addr(),
            config,
            path,
            &[("Accept", accept), ("Authorization", &auth)],
            Duration::from_secs(30),
        )
        .await
        .map_err(|e| HarnessError::Io {
            what: format!("GET {path}"),
            source: std::io::Error::other(e),
        })?;
        Ok((status.as_u16(), String::from_utf8_lossy(&body).into_owned()))
    }

    /// Runs kubectl (`binary`, e.g. from [`kubectl_binary`]) with the admin kubeconfig, a fresh `--cache-dir` and a
    /// scratch `HOME` for this call only.
    ///
    /// # Errors
    /// [`HarnessError::Io`], [`HarnessError::Timeout`].
    pub async fn kubectl(
        &self,
        binary: &Path,
        args: &[&str],
    ) -> Result<KubectlOutput, HarnessError> {
        self.kubectl_as(binary, &self.admin_kubeconfig, args).await
    }

    /// Runs `e2e/python/metrics_client.py` (the Python `kubernetes` client) with the admin kubeconfig and returns
    /// its JSON answer (`{"status": …, "items": […]}` or `{"status": …, "error": …}`).
    ///
    /// # Errors
    /// [`HarnessError::KubectlMissing`] without the venv, [`HarnessError::Io`], [`HarnessError::Timeout`].
    pub async fn python_metrics(&self, args: &[&str]) -> Result<serde_json::Value, HarnessError> {
        let python = venv_binary("python")?;
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let scratch = self.dir.path().join(format!("python-{n}"));
        std::fs::create_dir_all(&scratch).map_err(io("creating a python scratch dir"))?;
        let output = Command::new(python)
            .arg(python_dir().join("metrics_client.py"))
            .arg(&self.admin_kubeconfig)
            .args(args)
            .env("HOME", &scratch)
            .env("TMPDIR", &scratch)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(KUBECTL_TIMEOUT, output)
            .await
            .map_err(|_| HarnessError::Timeout {
                what: format!("metrics_client.py {}", args.join(" ")),
                after: KUBECTL_TIMEOUT,
            })?
            .map_err(io("running metrics_client.py"))?;
        serde_json::from_slice(&output.stdout).map_err(|e| HarnessError::Io {
            what: format!(
                "parsing metrics_client.py output (stderr: {})",
                String::from_utf8_lossy(&output.stderr)
            ),
            source: std::io::Error::other(e),
        })
    }

    /// [`Cluster::kubectl`] with another kubeconfig (see [`Cluster::add_user`]).
    ///
    /// # Errors
    /// [`HarnessError::Io`], [`HarnessError::Timeout`].
    pub async fn kubectl_as(
        &self,
        binary: &Path,
        kubeconfig: &Path,
        args: &[&str],
    ) -> Result<KubectlOutput, HarnessError> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let scratch = self.dir.path().join(format!("kubectl-{n}"));
        std::fs::create_dir_all(&scratch).map_err(io("creating a kubectl scratch dir"))?;
        let output = Command::new(binary)
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--cache-dir={}", scratch.join("cache").display()))
            .args(args)
            .env("HOME", &scratch)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(KUBECTL_TIMEOUT, output)
            .await
            .map_err(|_| HarnessError::Timeout {
                what: format!("kubectl {}", args.join(" ")),
                after: KUBECTL_TIMEOUT,
            })?
            .map_err(io(format!("running {}", binary.display())))?;
        Ok(KubectlOutput {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

// === impl ServerProcess ===

impl ServerProcess {
    /// The server's secure address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// OS process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Everything the server wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until `GET /readyz` answers 200.
    ///
    /// # Errors
    /// [`HarnessError::ServerExited`] when the process ends first, [`HarnessError::Timeout`].
    pub async fn wait_ready(&mut self, within: Duration) -> Result<(), HarnessError> {
        let config = Arc::new(tls::insecure_client_config(None)?);
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(HarnessError::ServerExited {
                    status,
                    log: self.log(),
                });
            }
            let probe = https::get(
                self.addr,
                config.clone(),
                "/readyz",
                &[],
                Duration::from_secs(2),
            )
            .await;
            if matches!(probe, Ok((status, _, _)) if status.is_success()) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(HarnessError::Timeout {
                    what: format!("server /readyz; log:\n{}", self.log()),
                    after: within,
                });
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Kills the process and waits for it.
    ///
    /// # Errors
    /// [`HarnessError::Io`].
    pub async fn kill(mut self) -> Result<(), HarnessError> {
        self.child.kill().await.map_err(io("killing the server"))
    }
}

// === impl KubeletProcess ===

impl KubeletProcess {
    /// Spawns `binary` (the `fake-kubelets` bin; in this crate's tests `env!("CARGO_BIN_EXE_fake-kubelets")`)
    /// serving nodes `range` of [`ClusterSpec::uniform`]`(_, pods_per_node)` on port 10250, requiring `token`, and
    /// waits for its `ready` line.
    ///
    /// The control plane must hold the same uniform spec with `address_base` 0 and be started with
    /// `start_kubelets: false`; in-process fleets never use the first 10 000 indices, so the two cannot collide.
    ///
    /// # Errors
    /// [`HarnessError::Io`], [`HarnessError::Timeout`].
    pub async fn spawn(
        binary: &Path,
        range: std::ops::Range<u32>,
        pods_per_node: u32,
        token: Option<&str>,
        ready_within: Duration,
    ) -> Result<Self, HarnessError> {
        use tokio::io::AsyncBufReadExt;
        let mut command = Command::new(binary);
        command
            .arg(format!("--from={}", range.start))
            .arg(format!("--to={}", range.end))
            .arg(format!("--pods-per-node={pods_per_node}"))
            .arg("--report-every=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        if let Some(token) = token {
            command.arg(format!("--token={token}"));
        }
        let mut child = command
            .spawn()
            .map_err(io(format!("spawning {}", binary.display())))?;
        let stdout = child.stdout.take().ok_or_else(|| HarnessError::Io {
            what: "reading fake-kubelets output".into(),
            source: std::io::Error::other("no stdout"),
        })?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(ready_within, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("ready ") {
                    return true;
                }
            }
            false
        })
        .await;
        match ready {
            Ok(true) => Ok(Self { child }),
            _ => Err(HarnessError::Timeout {
                what: "fake-kubelets to bind its listeners".into(),
                after: ready_within,
            }),
        }
    }

    /// OS process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

// === free functions ===

/// Polls `f` every 200 ms until it yields `Some`, for at most `within`.
///
/// # Errors
/// [`HarnessError::Timeout`] naming `what`.
pub async fn eventually<T, F, Fut>(
    what: &str,
    within: Duration,
    mut f: F,
) -> Result<T, HarnessError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = f().await {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(HarnessError::Timeout {
                what: what.to_owned(),
                after: within,
            });
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// The server binary: `$RMS_BIN`, else `<workspace>/target/debug/resource-metrics-server`, else
/// `$CARGO_TARGET_DIR/debug/resource-metrics-server`.
pub fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(SERVER_BIN_ENV) {
        return PathBuf::from(path);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."));
    let default = workspace.join("target/debug").join(SERVER_BIN_NAME);
    if default.exists() {
        return default;
    }
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("debug").join(SERVER_BIN_NAME),
        None => default,
    }
}

/// A kubectl binary: `kubectl.1.<minor>` from [`KUBECTL_DIR`] when `minor` is given and present, else
/// `kubectl.1.33`, else `kubectl` on `PATH`.
///
/// # Errors
/// [`HarnessError::KubectlMissing`].
pub fn kubectl_binary(minor: Option<u32>) -> Result<PathBuf, HarnessError> {
    let versioned = |m: u32| Path::new(KUBECTL_DIR).join(format!("kubectl.1.{m}"));
    if let Some(m) = minor {
        let path = versioned(m);
        return if path.exists() {
            Ok(path)
        } else {
            Err(HarnessError::KubectlMissing(path.display().to_string()))
        };
    }
    let preferred = versioned(33);
    if preferred.exists() {
        return Ok(preferred);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("kubectl"))
        .find(|p| p.exists())
        .ok_or_else(|| {
            HarnessError::KubectlMissing("neither kubectl.1.33 nor kubectl on PATH".into())
        })
}

/// The directory of the Python helpers (`e2e/python`).
pub fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// Environment variable naming a venv with kubectl 1.37.1 and the Python `kubernetes` client (`scripts/test.sh`
/// sets it).
pub const VENV_ENV: &str = "E2E_VENV";

/// A binary (`python`, `kubectl` 1.37.1) from the venv in `$E2E_VENV`, else from `e2e/python/.venv` (created by
/// `e2e/python/setup.sh`).
///
/// # Errors
/// [`HarnessError::KubectlMissing`] naming both places when neither has it.
pub fn venv_binary(name: &str) -> Result<PathBuf, HarnessError> {
    let from_env = std::env::var_os(VENV_ENV).map(|v| PathBuf::from(v).join("bin").join(name));
    let local = python_dir().join(".venv/bin").join(name);
    from_env
        .into_iter()
        .chain([local.clone()])
        .find(|p| p.exists())
        .ok_or_else(|| {
            HarnessError::KubectlMissing(format!(
                "{name} in $E2E_VENV or {} (run e2e/python/setup.sh)",
                local.display()
            ))
        })
}

/// An unguessable-enough bearer token for tests: name, process id, a counter and the clock, hashed.
fn token(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = format!(
        "{name}/{}/{}/{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        crate::model::now_ms()
    );
    let hash = seed.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("e2e-{name}-{hash:016x}")
}

/// A port that was free a moment ago on 127.0.0.1 (the server binds it itself).
fn free_port() -> Result<u16, HarnessError> {
    let listener =
        std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io("finding a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(io("finding a free port"))?
        .port())
}

/// Picks a pseudo-random block of node indices so concurrent clusters (parallel tests, other helpers' tests) use
/// different loopback addresses while keeping the real kubelet port.
fn address_base(attempt: u32) -> u32 {
    let seed = u64::from(std::process::id())
        ^ (crate::model::now_ms() as u64).rotate_left(17)
        ^ u64::from(attempt) << 40;
    let h = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20;
    // Blocks of 10 000 nodes, well inside the 15.8 M indices the address mapping supports.
    u32::try_from(h % 1_500).unwrap_or(0) * 10_000 + 10_000
}

async fn start_kubelets(
    pki: &Pki,
    spec: ClusterSpec,
    options: &ClusterOptions,
    server_token: &str,
) -> Result<(Model, KubeletFleet), HarnessError> {
    if !options.start_kubelets {
        // Another process serves the kubelets; keep an empty fleet (nodes can still be started later).
        let base = spec.address_base;
        let model = Model::new(spec)?;
        let fleet = KubeletFleet::start(
            &model,
            Some(&[]),
            fleet_options(pki, &model, base, options, server_token)?,
        )
        .await?;
        return Ok((model, fleet));
    }
    let mut last_error = None;
    for attempt in 0..ADDRESS_ATTEMPTS {
        let mut spec = spec.clone();
        if spec.address_base == 0 {
            spec.address_base = address_base(attempt);
        }
        let base = spec.address_base;
        let model = Model::new(spec)?;
        let fleet_options = fleet_options(pki, &model, base, options, server_token)?;
        match KubeletFleet::start(&model, None, fleet_options).await {
            Ok(fleet) => return Ok((model, fleet)),
            Err(KubeletError::Bind { source, .. })
                if source.kind() == std::io::ErrorKind::AddrInUse =>
            {
                last_error = Some(KubeletError::Bind {
                    node: String::new(),
                    addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                    source,
                });
            }
            Err(other) => return Err(other.into()),
        }
    }
    Err(last_error.map_or_else(
        || HarnessError::Timeout {
            what: "free kubelet addresses".into(),
            after: Duration::ZERO,
        },
        HarnessError::from,
    ))
}

/// TLS and auth settings for the in-process kubelets: one certificate naming every node (up to
/// [`MAX_KUBELET_SANS`]) plus a few addresses for nodes added later.
fn fleet_options(
    pki: &Pki,
    model: &Model,
    base: u32,
    options: &ClusterOptions,
    server_token: &str,
) -> Result<FleetOptions, HarnessError> {
    let nodes = model.nodes();
    let mut sans: Vec<String> = vec!["localhost".into(), "127.0.0.1".into()];
    for node in nodes.iter().take(MAX_KUBELET_SANS) {
        sans.push(node.spec.name.clone());
        if let Some(a) = node.spec.address {
            sans.push(a.to_string());
        }
    }
    // Nodes added later (Model::add_node) take the next indices: cover a few so their kubelets verify too.
    if nodes.len() < MAX_KUBELET_SANS {
        let first = base.saturating_add(u32::try_from(nodes.len()).unwrap_or(u32::MAX));
        sans.extend(
            (first..first.saturating_add(SPARE_KUBELET_SANS))
                .map(|i| crate::model::node_address(i).to_string()),
        );
    }
    let cert = pki.issue_server("kubelet", &sans)?;
    Ok(FleetOptions {
        tls: Arc::new(tls::server_config(&cert, &[])?),
        required_token: options
            .kubelets_require_token
            .then(|| server_token.to_owned()),
        max_stats_lag_ms: options.max_stats_lag_ms,
    })
}

fn auth_configmap(pki: &Pki) -> ConfigMap {
    let data = [
        ("client-ca-file", pki.cluster_ca_pem().to_owned()),
        (
            "requestheader-client-ca-file",
            pki.front_proxy_ca_pem().to_owned(),
        ),
        (
            "requestheader-allowed-names",
            format!("[\"{FRONT_PROXY_CLIENT_CN}\"]"),
        ),
        (
            "requestheader-extra-headers-prefix",
            "[\"X-Remote-Extra-\"]".to_owned(),
        ),
        (
            "requestheader-group-headers",
            "[\"X-Remote-Group\"]".to_owned(),
        ),
        (
            "requestheader-username-headers",
            "[\"X-Remote-User\"]".to_owned(),
        ),
        ("requestheader-uid-headers", "[\"X-Remote-Uid\"]".to_owned()),
    ];
    ConfigMap {
        namespace: "kube-system".into(),
        name: "extension-apiserver-authentication".into(),
        data: data.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    }
}

/// Writes a kubeconfig (JSON, which kubectl and kube-rs read as YAML) with a bearer token over HTTPS.
fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca: &Path,
    user: &str,
    token: &str,
) -> Result<(), HarnessError> {
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {"server": server, "certificate-authority": ca}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": user, "namespace": "default"}}],
        "current-context": "e2e",
    });
    let text = serde_json::to_string_pretty(&config).unwrap_or_default();
    std::fs::write(path, text).map_err(io(format!("writing {}", path.display())))
}
