//! The `cgi-testbed` binary: parse the command line, block the stop signals, serve;
//! or hand `report` over to the `cgi-testbed-report` binary.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use clap::Parser;
use nix::sys::signal::{SigSet, Signal};

use cgi_testbed::Server;
use cgi_testbed::cli::{Args, Command};

fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Some(Command::Report { args }) = args.command.take() {
        return report(args);
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

/// `cgi-testbed report ARGS`: replaces this process with `cgi-testbed-report
/// --server <this binary> ARGS`, so the report measures this very server. The report
/// is a crate of its own so that the server does not compile the plotting stack;
/// `CGI_TESTBED_REPORT` names another report binary.
fn report(args: Vec<OsString>) -> ExitCode {
    let program = match std::env::var_os("CGI_TESTBED_REPORT") {
        Some(p) => p.into(),
        None => match cgi_testbed::sibling::find("cgi-testbed-report", "cgi-testbed-report") {
            Ok(p) => p,
            Err(e) => {
                eprintln!("cgi-testbed report: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let mut cmd = std::process::Command::new(&program);
    if let Ok(me) = std::env::current_exe() {
        cmd.arg("--server").arg(me);
    }
    let e = cmd.args(args).exec();
    eprintln!("cgi-testbed report: {}: {e}", program.display());
    ExitCode::FAILURE
}
