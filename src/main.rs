//! The binary: flags → telemetry → `Config` → `runtime::run` → exit code. Only this file chooses exit codes.

use std::process::ExitCode;

use resource_metrics_server::config::{self, Config, LogFormat};
use resource_metrics_server::{runtime, shutdown, telemetry};

const EX_USAGE: u8 = 64; // sysexits.h: the command line was wrong.

/// mimalloc rather than glibc malloc: per-thread free lists without glibc's arena consolidation. At 5,000 nodes it
/// cut the server's CPU by a fifth (`BENCHMARKS.md`). `--no-default-features` builds with the system allocator,
/// e.g. to heap-profile with heaptrack. Built with `no_thp`: mimalloc otherwise asks for transparent huge pages on
/// its arenas, and each touched 2 MiB page then counts whole in RSS (47 against 26 MiB at 100 nodes).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let (args, ignored) = match config::parse_args(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(error) => {
            let _ = error.print(); // `--help` and `--version` end here too, with success.
            return ExitCode::from(if error.use_stderr() { EX_USAGE } else { 0 });
        }
    };
    let format = LogFormat::parse(&args.logging_format).unwrap_or_default(); // bad: Config reports it
    if let Err(error) = telemetry::init(format, args.verbosity) {
        eprintln!("cannot initialise logging: {error}");
    }
    ignored
        .iter()
        .for_each(|warning| tracing::warn!("{warning}"));
    let result = Config::try_from(args).map(|config| {
        let rt = tokio::runtime::Runtime::new()?;
        anyhow::Ok(rt.block_on(async { runtime::run(config, shutdown::os_signal()).await })?)
    });
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
        Err(problems) => {
            eprintln!("{problems}");
            ExitCode::from(EX_USAGE)
        }
    }
}
