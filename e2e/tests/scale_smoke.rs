//! Smoke test of the scale benchmark: `scale --smoke` (200 nodes, one 10 s cycle, debug binaries) must bring up
//! its kubelet processes, the control plane and the server, serve every node, scrape every node in the measured
//! cycle, list every pod and print its table. It checks coverage only, never timings.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// Bound on the whole smoke run (it takes about 35 s on a loaded 2-core machine).
const SMOKE_WITHIN: Duration = Duration::from_secs(150);

#[tokio::test]
async fn the_scale_smoke_run_serves_every_node_and_prints_its_table() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_scale"));
    command
        .arg("--smoke")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if std::env::var_os(e2e::harness::SERVER_BIN_ENV).is_none() {
        command.env(e2e::harness::SERVER_BIN_ENV, e2e::harness::server_binary());
    }
    let output = tokio::time::timeout(SMOKE_WITHIN, command.output())
        .await
        .expect("the smoke run finishes within its bound")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scale --smoke failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("SCALE nodes=200 served=200 scraped_last_cycle=200 pods_listed=6000/6000"),
        "not every node was served:\n{stdout}\n{stderr}"
    );
    for row in [
        "| nodes served (metrics API node list) | 200/200 |",
        "| server CPU, average over the window |",
        "| our CPU ÷ paced floor CPU per cycle |",
        "| our CPU ÷ burst floor CPU per cycle |",
        "| HPA-style namespaced selector list p50 / p99 / max |",
    ] {
        assert!(stdout.contains(row), "row {row:?} missing from\n{stdout}");
    }
}
