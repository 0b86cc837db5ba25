//! The `cgi-testbed-report` binary (also run by `cgi-testbed report`).

use std::process::ExitCode;

use clap::Parser;

use cgi_testbed_report::ReportArgs;

fn main() -> ExitCode {
    let args = ReportArgs::parse();
    match cgi_testbed_report::run(&args.into_options()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cgi-testbed report: {e}");
            ExitCode::FAILURE
        }
    }
}
