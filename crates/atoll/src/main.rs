//! `atoll`: one binary for the platform server, the host agent and the
//! command-line client.

mod alerts;
mod cli;
mod clusters;
mod daemons;
mod deploy;
mod hosts;
mod metrics;
mod output;
mod packages;
mod plan;
mod platform;
mod playground;
mod playground_ha;
mod proxy;
mod session;
mod tasks;

use clap::Parser;

fn main() -> std::process::ExitCode {
    atoll_pki::install_provider();
    let mut args = cli::Cli::parse();
    if let cli::Command::Agent(a) = &mut args.command {
        a.env_join_token = take_env("ATOLL_JOIN_TOKEN");
    }
    let runtime = match runtime_for(&args) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return output::Exit::Error.into();
        }
    };
    runtime.block_on(cli::run(args))
}

/// A thread pool for everything but the proxy: its relay threads run
/// reactors of their own, and the rest (accept, probes, the platform's
/// long-poll) needs only one thread.
fn runtime_for(args: &cli::Cli) -> std::io::Result<tokio::runtime::Runtime> {
    if args.is_proxy() { tokio::runtime::Builder::new_current_thread().enable_all().build() } else { tokio::runtime::Runtime::new() }
}

/// Reads a secret from the environment and removes it there, so that no
/// child process inherits it and `/proc/PID/environ` does not show it.
#[allow(unsafe_code)]
fn take_env(name: &str) -> Option<String> {
    let value = std::env::var(name).ok().filter(|v| !v.is_empty());
    // SAFETY: called from `main` before the runtime starts any thread, so
    // no other thread can be reading the environment.
    unsafe {
        overwrite_env_value(name);
        std::env::remove_var(name);
    }
    value
}

#[allow(unsafe_code)]
unsafe extern "C" {
    static environ: *const *mut std::os::raw::c_char;
}

/// Overwrites `name`'s value in place. `/proc/PID/environ` shows the block
/// the process started with, which `unsetenv` only unlinks from `environ`;
/// the kernel would go on showing the secret for the process's lifetime.
///
/// # Safety
/// No other thread may touch the environment meanwhile.
#[allow(unsafe_code)]
unsafe fn overwrite_env_value(name: &str) {
    let prefix = format!("{name}=");
    // SAFETY: `environ` is a null-terminated array of pointers to
    // NUL-terminated strings owned by the process; each value is
    // overwritten within its own length.
    unsafe {
        let mut entry = environ;
        while !entry.is_null() && !(*entry).is_null() {
            let bytes = std::ffi::CStr::from_ptr(*entry).to_bytes();
            if bytes.starts_with(prefix.as_bytes()) {
                std::ptr::write_bytes((*entry).add(prefix.len()), b'x', bytes.len() - prefix.len());
            }
            entry = entry.add(1);
        }
    }
}
