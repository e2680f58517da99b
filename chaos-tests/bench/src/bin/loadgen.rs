//! `loadgen`: drives sagas against a running coordinator (closed or open loop) and reports
//! throughput, latency percentiles and outcomes; `--verify` checks the books afterwards.
//! Exits 0 on a clean run, 1 when the books (or a must-abort saga) are wrong, 2 when the run
//! itself failed.

use std::process::ExitCode;

use clap::Parser;
use saga_bench::loadgen::{self, Args};

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(loadgen::run(args)) {
        Ok(report) if report.ok => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}
