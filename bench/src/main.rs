//! `aigw-bench`: the gateway's benchmark harness.
//!
//! One command measures the gateway against a mock upstream on loopback and writes
//! `BENCHMARKS.md` plus `BENCHMARKS.json` (see README.md, "Benchmarks"):
//!
//! ```sh
//! cargo run --release -p aigw-bench -- --out BENCHMARKS.md
//! ```
//!
//! `aigw-bench mock` runs the mock upstream alone; `aigw-bench cache` measures the response
//! cache and writes `bench/CACHE.md`; `aigw-bench classify` measures task classification and
//! writes `bench/CLASSIFY.md`.

#[cfg(not(target_family = "wasm"))]
mod bench;
#[cfg(not(target_family = "wasm"))]
mod classify;
#[cfg(not(target_family = "wasm"))]
mod cli;
#[cfg(not(target_family = "wasm"))]
mod load;
#[cfg(not(target_family = "wasm"))]
mod mock;
#[cfg(not(target_family = "wasm"))]
mod procs;
#[cfg(not(target_family = "wasm"))]
mod report;
#[cfg(not(target_family = "wasm"))]
mod semantic_cache;
#[cfg(not(target_family = "wasm"))]
mod servers;
#[cfg(not(target_family = "wasm"))]
mod stats;

#[cfg(not(target_family = "wasm"))]
fn main() -> std::process::ExitCode {
    use clap::Parser;
    let cli = cli::Cli::parse();
    match cli.command {
        Some(cli::Command::Mock(args)) => match mock::run(args) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mock: {e:#}");
                std::process::ExitCode::FAILURE
            }
        },
        Some(cli::Command::Cache(args)) => {
            let result = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| {
                    runtime.block_on(semantic_cache::run(args, &bench::repo_root()))
                });
            match result {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("cache: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Some(cli::Command::Classify(args)) => {
            let result = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| runtime.block_on(classify::run(args, &bench::repo_root())));
            match result {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("classify: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Some(cli::Command::Render(args)) => match bench::render(&args) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("render: {e:#}");
                std::process::ExitCode::FAILURE
            }
        },
        None => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("error: cannot start the tokio runtime: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            // The orchestration runs on this (main) thread: children are forked from it, and
            // their death signal is tied to it.
            let result = runtime.block_on(bench::run(cli.run));
            procs::kill_all();
            runtime.shutdown_timeout(std::time::Duration::from_secs(2));
            match result {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}

/// The harness needs processes, sockets and /proc: it runs natively only.
#[cfg(target_family = "wasm")]
fn main() {
    eprintln!("aigw-bench runs natively only");
}
