//! The `cgi-testbed-report` binary (also run by `cgi-testbed report`).

use std::process::ExitCode;

use clap::Parser;

use cgi_testbed_report::{ReportArgs, children};

fn main() -> ExitCode {
    let args = ReportArgs::parse();
    // Before any thread starts: Ctrl-C then stops the servers the report started.
    if let Err(e) = children::install() {
        eprintln!("cgi-testbed report: cannot handle signals: {e}");
        return ExitCode::FAILURE;
    }
    match cgi_testbed_report::run(&args.into_options()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cgi-testbed report: {e}");
            ExitCode::FAILURE
        }
    }
}
