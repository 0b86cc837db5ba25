//! Runs each bench's setup and one pass of what it measures, with no timing loop, so a
//! broken bench fails `cargo test` (the benches themselves only build in CI:
//! `cargo bench --no-run`). The harness is the benches' own `benches/common`.

#[path = "../benches/common/mod.rs"]
mod common;
/// The integration tests' harness, for its skip rule.
#[path = "common/mod.rs"]
mod peers;

use cgi_testbed::fastcgi::record;
use common::client::Clients;
use common::inputs;
use common::ladder::{Model, Site, ladder};
use common::procs::{Ballast, MODES, Runner, programs};

#[test]
fn parse_inputs_are_what_the_bench_claims() {
    let req = inputs::parse_head(inputs::REQUEST_HEAD);
    assert_eq!(req.headers.len(), 11);
    let env = inputs::meta_variables(&req, &inputs::script(), &inputs::site());
    let var = |name: &str| {
        env.get(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(var("PATH_INFO").as_deref(), Some("/extra/path"));
    assert_eq!(var("QUERY_STRING").as_deref(), Some("name=world&lang=en"));
    assert_eq!(
        var("HTTP_COOKIE").as_deref(),
        Some("session=0123456789abcdef0123456789abcdef; theme=dark; seen=1")
    );

    let resp = inputs::parse_cgi_response(inputs::CGI_RESPONSE);
    assert_eq!((resp.status, resp.content_length), (200, Some(13)));
    assert!(
        !resp
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("connection"))
    );

    let mut wire = Vec::new();
    inputs::encode_request(&mut wire, &env);
    let mut stdout = Vec::new();
    // BEGIN_REQUEST, one PARAMS record and its terminator, the empty STDIN.
    assert_eq!(inputs::decode(&wire, &mut stdout), (4, env.len()));
    assert!(stdout.is_empty());

    let payload = inputs::stdout_payload();
    assert_eq!(payload.len(), 1024);
    wire.clear();
    inputs::encode_response(&mut wire, &payload);
    assert_eq!(inputs::decode(&wire, &mut stdout), (3, 0));
    assert_eq!(stdout, payload);
    let (last, _) = record::decode(&wire[wire.len() - 16..]).unwrap().unwrap();
    assert_eq!(last.record_type, record::RecordType::EndRequest);
}

#[test]
fn spawn_starts_every_program_both_ways() {
    let progs = programs();
    for note in &progs.skipped {
        peers::skip(note);
    }
    assert_eq!(progs.list[0].label, "rust");
    let runner = Runner::new();
    for prog in &progs.list {
        for (name, mode) in MODES {
            let out = String::from_utf8(runner.run_once(mode, &prog.path)).unwrap();
            assert!(
                out.starts_with("Content-Type: text/plain") && out.contains("Hello"),
                "{} via {name}: {out:?}",
                prog.label
            );
        }
    }
    let before = common::rss_mib().expect("VmRSS");
    let ballast = Ballast::new(64);
    let after = common::rss_mib().expect("VmRSS");
    // Other tests run in this process too, so only a lower bound holds.
    assert!(
        after >= before + 60,
        "64 MiB ballast is not resident: {before} → {after} MiB"
    );
    for (_, mode) in MODES {
        assert!(!runner.run_once(mode, &progs.list[0].path).is_empty());
    }
    assert_eq!(ballast.mib(), 64);
}

#[test]
fn models_serve_every_rung_over_keep_alive() {
    let (rungs, notes) = ladder();
    for note in &notes {
        peers::skip(note);
    }
    assert!(rungs.iter().any(|r| r.lang == "rust"));
    for rung in &rungs {
        let site = Site::start(rung, 2);
        for &model in &rung.models {
            site.warm(model);
            let clients = Clients::start(site.addr(), &site.path(model), 2).unwrap();
            let round = clients.round(2);
            assert!(
                round.failures.is_empty() && round.requests == 4,
                "{} {model}: {round:?}\n{}",
                rung.lang,
                site.error_log()
            );
            let body = site.get(model).text();
            assert!(
                body.starts_with(rung.greeting),
                "{} {model}: {body:?}",
                rung.lang
            );
            if rung.lang != "sh" {
                let mode = match model {
                    Model::Cgi => "mode: cgi\n",
                    Model::Fcgi => "mode: fastcgi\n",
                };
                assert!(body.contains(mode), "{} {model}: {body:?}", rung.lang);
            }
        }
    }
}
