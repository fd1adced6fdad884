//! `atoll`: one binary for the platform server, the host agent and the
//! command-line client.

mod cli;
mod clusters;
mod daemons;
mod output;
mod packages;
mod playground;
mod proxy;
mod session;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return output::Exit::Error.into();
        }
    };
    runtime.block_on(cli::run(args))
}
