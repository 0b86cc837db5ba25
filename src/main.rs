//! The `cgi-testbed` binary: parse the command line, block the stop signals, serve.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use nix::sys::signal::{SigSet, Signal};

use cgi_testbed::Server;
use cgi_testbed::cli::{Args, Command};

fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Some(Command::Report(r)) = args.command.take() {
        return match cgi_testbed::report::run(&r.into_options()) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cgi-testbed report: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match args.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cgi-testbed: {e}");
            return ExitCode::from(2);
        }
    };
    // Block the stop signals before any thread starts, so only the waiter below
    // receives them; scripts get a clean mask from the spawner.
    let mut stop = SigSet::empty();
    stop.add(Signal::SIGINT);
    stop.add(Signal::SIGTERM);
    if let Err(e) = stop.thread_block() {
        eprintln!("cgi-testbed: cannot block signals: {e}");
        return ExitCode::FAILURE;
    }
    let server = match Server::bind(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cgi-testbed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = match server.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cgi-testbed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let handle = server.handle();
    std::thread::spawn(move || {
        if let Ok(sig) = stop.wait() {
            eprintln!("cgi-testbed: {sig}, shutting down");
            handle.shutdown();
        }
        // A second signal means "now".
        if stop.wait().is_ok() {
            std::process::exit(130);
        }
    });
    println!("listening on http://{addr}");
    let _ = std::io::stdout().flush();
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cgi-testbed: {e}");
            ExitCode::FAILURE
        }
    }
}
