//! The command line's two forms: the server's flags at the top level, exactly as
//! before the `report` subcommand existed, and `report`, whose options go to the
//! `cgi-testbed-report` binary as they are (that crate tests them).

use std::process::Command;
use std::time::Duration;

use cgi_testbed::cli::{Args, Command as Sub};
use cgi_testbed::paths::Dotfiles;
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
fn report_takes_everything_after_it_as_the_reports_own() {
    let args = parse(&["report", "--quick", "--out", "/tmp/x", "--languages", "sh"]).unwrap();
    let Some(Sub::Report { args }) = args.command else {
        panic!("not the report subcommand");
    };
    assert_eq!(args, ["--quick", "--out", "/tmp/x", "--languages", "sh"]);
    let Some(Sub::Report { args }) = parse(&["report", "--help"]).unwrap().command else {
        panic!("not the report subcommand");
    };
    assert_eq!(args, ["--help"]);
    // Server flags belong to serving, not to the report.
    assert!(parse(&["--listen", "127.0.0.1:0", "report"]).is_err());
}

#[test]
fn report_runs_the_report_binary_with_its_arguments() {
    // Any program stands in for cgi-testbed-report: this checks the hand-over, not
    // the report (its crate's tests run it).
    let out = Command::new(env!("CARGO_BIN_EXE_cgi-testbed"))
        .args(["report", "--languages", "sh", "--concurrency", "64"])
        .env("CGI_TESTBED_REPORT", "/bin/echo")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    // The report is told to measure this very binary.
    let me = std::fs::canonicalize(env!("CARGO_BIN_EXE_cgi-testbed")).unwrap();
    assert_eq!(
        said.trim(),
        format!("--server {} --languages sh --concurrency 64", me.display())
    );
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
}

#[test]
fn scripts_by_extension_and_index_names() {
    use cgi_testbed::config::FcgiExt;
    use cgi_testbed::fastcgi::external::Address;
    let config = parse(&[
        "--root",
        "site",
        "--cgi-ext",
        ".cgi",
        "--cgi-ext",
        "py=/usr/bin/python3",
        "--fcgi-ext",
        "php=/usr/bin/php-cgi",
        "--fcgi-ext",
        "phtml=unix:/run/php.sock",
        "--fcgi-ext",
        "inc=127.0.0.1:9000",
        "--index",
        "index.php",
        "--index",
        "index.html",
    ])
    .unwrap()
    .into_config()
    .unwrap();
    assert_eq!(
        config.cgi_ext,
        [
            ("cgi".into(), None),
            ("py".into(), Some("/usr/bin/python3".into()))
        ]
    );
    assert_eq!(
        config.fcgi_ext,
        [
            ("php".into(), FcgiExt::Program("/usr/bin/php-cgi".into())),
            (
                "phtml".into(),
                FcgiExt::Server(Address::Unix("/run/php.sock".into()))
            ),
            (
                "inc".into(),
                FcgiExt::Server(Address::Tcp("127.0.0.1:9000".into()))
            ),
        ]
    );
    assert_eq!(config.index, ["index.php", "index.html"]);
    assert_eq!(
        parse(&[]).unwrap().into_config().unwrap().index,
        ["index.html"],
        "the default"
    );
    for bad in [
        &["--cgi-ext", "php"][..],
        &["--root", "s", "--cgi-ext", "php=/a", "--fcgi-ext", "PHP=/b"],
        &["--root", "s", "--cgi-ext", "php="],
        &["--root", "s", "--cgi-ext", "tar.gz"],
        &["--root", "s", "--fcgi-ext", "php"],
        &["--root", "s", "--fcgi-ext", "php=unix:"],
        &["--root", "s", "--index", "a/b"],
        &["--root", "s", "--index", ".."],
    ] {
        let refused = parse(bad)
            .map_err(|e| e.to_string())
            .and_then(|a| a.into_config());
        assert!(refused.is_err(), "{bad:?} was taken");
    }
}
