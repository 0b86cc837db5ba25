//! The command line's two forms: the server's flags at the top level, exactly as
//! before the `report` subcommand existed, and `report` with its own options.

use std::process::Command;
use std::time::Duration;

use cgi_testbed::cli::{Args, Command as Sub};
use cgi_testbed::paths::Dotfiles;
use cgi_testbed::report::ladder::Language;
use clap::Parser;

fn parse(args: &[&str]) -> Result<Args, clap::Error> {
    Args::try_parse_from(std::iter::once("cgi-testbed").chain(args.iter().copied()))
}

#[test]
fn the_server_invocations_still_parse_and_serve() {
    for form in [
        &[][..],
        &["--listen", "127.0.0.1:0"],
        &[
            "--cgi-dir",
            "cgi-bin",
            "--timeout",
            "5s",
            "--max-procs",
            "16",
        ],
        &["--root", "site", "--try-files", "$uri $uri/ /cgi-bin/app"],
        &["--spawn", "fork", "--access-log", "-", "--workers-max", "4"],
        &[
            "--fastcgi",
            "app=127.0.0.1:9000",
            "--no-server-timing",
            "--limit-cpu",
            "10s",
        ],
    ] {
        let args = parse(form).unwrap_or_else(|e| panic!("{form:?}: {e}"));
        assert!(args.command.is_none(), "{form:?}");
        args.into_config()
            .unwrap_or_else(|e| panic!("{form:?}: {e}"));
    }
    let config = parse(&["--listen", "127.0.0.1:0", "--timeout", "5s"])
        .unwrap()
        .into_config()
        .unwrap();
    assert_eq!(config.listen.to_string(), "127.0.0.1:0");
    assert_eq!(config.timeout, Duration::from_secs(5));
    assert_eq!(config.dotfiles, Dotfiles::Deny, "the default");
    let config = parse(&["--dotfiles", "allow"])
        .unwrap()
        .into_config()
        .unwrap();
    assert_eq!(config.dotfiles, Dotfiles::Allow);
    assert!(parse(&["--dotfiles", "maybe"]).is_err());
}

#[test]
fn report_is_a_subcommand_with_its_own_options() {
    let Some(Sub::Report(r)) = parse(&["report"]).unwrap().command else {
        panic!("not the report subcommand");
    };
    let o = r.into_options();
    assert_eq!(o.out.to_str(), Some("report"));
    assert_eq!(o.concurrency, [1, 2, 4, 8, 16, 32, 64]);
    assert_eq!(o.languages.len(), 5);

    let args = parse(&[
        "report",
        "--quick",
        "--out",
        "/tmp/x",
        "--languages",
        "sh,python",
        "--concurrency",
        "4,1,2",
        "--requests",
        "30",
        "--duration",
        "1.5",
    ])
    .unwrap();
    let Some(Sub::Report(r)) = args.command else {
        panic!("not the report subcommand");
    };
    let o = r.into_options();
    assert_eq!(o.languages, [Language::Sh, Language::Python]);
    assert_eq!(o.concurrency, [1, 2, 4]);
    assert_eq!(o.limits.requests, 30);
    assert_eq!(o.limits.duration, Duration::from_millis(1500));

    // Server flags belong to serving, not to the report.
    assert!(parse(&["--listen", "127.0.0.1:0", "report"]).is_err());
    assert!(parse(&["report", "--concurrency", "0"]).is_err());
    assert!(parse(&["report", "--languages", "cobol"]).is_err());
}

#[test]
fn help_shows_the_subcommand() {
    let bin = env!("CARGO_BIN_EXE_cgi-testbed");
    let out = Command::new(bin).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("report") && help.contains("--listen"),
        "{help}"
    );
    let out = Command::new(bin)
        .args(["report", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--quick",
        "--out",
        "--languages",
        "--concurrency",
        "--requests",
        "--duration",
    ] {
        assert!(help.contains(flag), "report --help lacks {flag}:\n{help}");
    }
}
