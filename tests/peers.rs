//! The rule for tests that need something from the machine (php-cgi, Perl's FCGI,
//! flup, a writable cgroup): skipped with a note on a developer's machine, failed
//! under `.ci/run`, which installs them and sets CGI_TESTBED_REQUIRE_PEERS.

mod common;

use std::process::Command;

use common::*;

#[test]
#[ignore = "run by missing_peers_fail_under_ci_and_skip_otherwise"]
fn a_test_whose_peer_is_missing() {
    if !peer(false, "a peer no machine has") {
        return;
    }
    unreachable!("peer(false, ..) let the test go on");
}

#[test]
fn missing_peers_fail_under_ci_and_skip_otherwise() {
    let me = std::env::current_exe().unwrap();
    let run = |require: Option<&str>| {
        let mut c = Command::new(&me);
        c.args(["--ignored", "--exact", "a_test_whose_peer_is_missing"]);
        match require {
            Some(v) => c.env(REQUIRE_PEERS, v),
            None => c.env_remove(REQUIRE_PEERS),
        };
        let out = c.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    for unset in [None, Some(""), Some("0")] {
        let (ok, text) = run(unset);
        assert!(ok, "{unset:?}: {text}");
        assert!(
            text.contains("SKIPPED a_test_whose_peer_is_missing: needs a peer no machine has"),
            "{unset:?}: the reason must show even though the test passed: {text}"
        );
    }
    let (ok, text) = run(Some("1"));
    assert!(!ok, "{text}");
    assert!(text.contains("CGI_TESTBED_REQUIRE_PEERS is set"), "{text}");
}
