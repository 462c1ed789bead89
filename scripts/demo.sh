#!/usr/bin/env bash
# The local demo: a simulated cluster (fake control plane + fake kubelets on 127.x addresses), our server behind
# the fake aggregator, and real `kubectl top` against it. Keeps running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins
export RMS_BIN="$(pwd)/target/debug/resource-metrics-server"
exec target/debug/demo "$@"
