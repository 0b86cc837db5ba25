//! What a script sees: meta-variables, a clean environment, argv, cwd, stdin, its
//! process group, signals and descriptors; and which files may run at all.

mod common;

use std::path::PathBuf;

use cgi_testbed::spawn::SpawnMode;
use common::*;

/// Prints facts about its own process as NAME=value lines.
const PROC_SCRIPT: &str = r#"#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
echo "PID=$$"
echo "PGID=$(cut -d' ' -f5 /proc/$$/stat)"
echo "CWD=$(pwd)"
echo "STDIN=$(readlink /proc/$$/fd/0)"
echo "SIGIGN=$(grep SigIgn /proc/$$/status | cut -f2)"
echo "SIGBLK=$(grep SigBlk /proc/$$/status | cut -f2)"
echo "ARGC=$#"
i=1; for a in "$@"; do echo "ARG$i=$a"; i=$((i+1)); done
echo "READ=$(wc -c | tr -d ' ')"
exec python3 -c 'import os
for f in os.listdir("/proc/self/fd"):
    try: print("FD", f, os.readlink("/proc/self/fd/" + f))
    except OSError: pass'
"#;

/// The server ignores SIGPIPE; its scripts must not inherit that. (The shell itself
/// ignores some real-time signals, so only SIGPIPE's bit is checked.)
fn sigpipe_ignored(r: &Response) -> bool {
    let mask = u64::from_str_radix(&r.var("SIGIGN").unwrap(), 16).unwrap();
    mask & (1 << (libc_sigpipe() - 1)) != 0
}

fn libc_sigpipe() -> u32 {
    13
}

fn env_server() -> TestServer {
    TestServer::start(&[
        ("env", ENV_SCRIPT),
        ("sub/env", ENV_SCRIPT),
        ("proc", PROC_SCRIPT),
    ])
}

#[test]
fn meta_variables_of_a_get() {
    let s = env_server();
    let mut c = s.client();
    let client_port = c.stream.local_addr().unwrap().port();
    c.send(b"GET /cgi-bin/env/some%20where/x?a=1&b=%41 HTTP/1.1\r\nHost: Example.COM:8081\r\nUser-Agent: t/1\r\nConnection: close\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200);
    let dir = std::fs::canonicalize(s.dir.path()).unwrap();
    let expect = [
        ("GATEWAY_INTERFACE", "CGI/1.1".to_owned()),
        (
            "SERVER_SOFTWARE",
            format!("cgi-testbed/{}", env!("CARGO_PKG_VERSION")),
        ),
        ("SERVER_PROTOCOL", "HTTP/1.1".into()),
        ("SERVER_NAME", "example.com".into()),
        ("SERVER_PORT", s.addr().port().to_string()),
        ("SERVER_ADDR", "127.0.0.1".into()),
        ("REMOTE_ADDR", "127.0.0.1".into()),
        ("REMOTE_HOST", "127.0.0.1".into()),
        ("REMOTE_PORT", client_port.to_string()),
        ("REQUEST_METHOD", "GET".into()),
        ("QUERY_STRING", "a=1&b=%41".into()),
        (
            "REQUEST_URI",
            "/cgi-bin/env/some%20where/x?a=1&b=%41".into(),
        ),
        ("SCRIPT_NAME", "/cgi-bin/env".into()),
        (
            "SCRIPT_FILENAME",
            dir.join("cgi-bin/env").display().to_string(),
        ),
        ("PATH_INFO", "/some where/x".into()),
        ("PATH_TRANSLATED", format!("{}/some where/x", dir.display())),
        ("DOCUMENT_ROOT", dir.display().to_string()),
        ("REDIRECT_STATUS", "200".into()),
        ("HTTP_HOST", "Example.COM:8081".into()),
        ("HTTP_USER_AGENT", "t/1".into()),
    ];
    for (name, value) in expect {
        assert_eq!(r.var(name).as_deref(), Some(value.as_str()), "{name}");
    }
    for absent in [
        "CONTENT_LENGTH",
        "CONTENT_TYPE",
        "AUTH_TYPE",
        "REMOTE_USER",
        "HTTPS",
    ] {
        assert_eq!(r.var(absent), None, "{absent}");
    }
}

#[test]
fn empty_query_string_is_set_and_path_translated_is_not() {
    let s = env_server();
    let r = s.exchange(b"GET /cgi-bin/env HTTP/1.0\r\n\r\n");
    assert_eq!(r.var("QUERY_STRING").as_deref(), Some(""));
    assert_eq!(r.var("PATH_INFO").as_deref(), Some(""));
    assert_eq!(r.var("PATH_TRANSLATED"), None);
    assert_eq!(r.var("SERVER_PROTOCOL").as_deref(), Some("HTTP/1.0"));
    assert_eq!(r.var("SERVER_NAME").as_deref(), Some("127.0.0.1"));
}

#[test]
fn body_variables_appear_once() {
    let s = env_server();
    let r = s.exchange(b"POST /cgi-bin/env HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc");
    assert_eq!(r.var("CONTENT_LENGTH").as_deref(), Some("3"));
    assert_eq!(r.var("CONTENT_TYPE").as_deref(), Some("text/plain"));
    assert_eq!(r.var("HTTP_CONTENT_LENGTH"), None);
    assert_eq!(r.var("HTTP_CONTENT_TYPE"), None);
}

#[test]
fn server_environment_does_not_leak() {
    let s = TestServer::with(&[("env", ENV_SCRIPT)], |c| {
        c.env = vec![
            ("APP_MODE".into(), b"test".to_vec()),
            ("PATH".into(), b"/opt/bin:/bin".to_vec()),
        ];
    });
    let r = s.get("/cgi-bin/env");
    let names: Vec<String> = r
        .text()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(n, _)| n.to_owned()))
        .collect();
    // `cargo test` runs us with CARGO_*, HOME, USER...: none of it may reach a script.
    for name in &names {
        let known = name.starts_with("HTTP_")
            || [
                "PATH",
                "GATEWAY_INTERFACE",
                "SERVER_SOFTWARE",
                "SERVER_PROTOCOL",
                "SERVER_NAME",
                "SERVER_PORT",
                "SERVER_ADDR",
                "REMOTE_ADDR",
                "REMOTE_HOST",
                "REMOTE_PORT",
                "REQUEST_METHOD",
                "REQUEST_URI",
                "QUERY_STRING",
                "SCRIPT_NAME",
                "SCRIPT_FILENAME",
                "PATH_INFO",
                "DOCUMENT_ROOT",
                "REDIRECT_STATUS",
                "APP_MODE",
                "PWD",
            ]
            .contains(&name.as_str());
        assert!(known, "unexpected variable {name} reached the script");
    }
    assert_eq!(r.var("APP_MODE").as_deref(), Some("test"));
    assert_eq!(r.var("PATH").as_deref(), Some("/opt/bin:/bin"));
}

#[test]
fn hostile_headers_never_become_dangerous_variables() {
    let s = env_server();
    let r = s.exchange(
        b"GET /cgi-bin/env HTTP/1.1\r\nHost: x\r\nProxy: http://evil:3128\r\n\
          X_Forwarded_For: 6.6.6.6\r\nX-Forwarded-For: 1.2.3.4\r\n\
          Content_Length: 99\r\nAuthorization: Basic dXNlcjpwYXNz\r\n\
          Proxy-Authorization: Basic eA==\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.var("HTTP_PROXY"), None);
    assert_eq!(r.var("HTTP_X_FORWARDED_FOR").as_deref(), Some("1.2.3.4"));
    assert_eq!(r.var("HTTP_CONTENT_LENGTH"), None);
    assert_eq!(r.var("CONTENT_LENGTH"), None);
    assert_eq!(r.var("HTTP_AUTHORIZATION"), None);
    assert_eq!(r.var("HTTP_PROXY_AUTHORIZATION"), None);
    assert_eq!(r.var("AUTH_TYPE").as_deref(), Some("Basic"));
}

#[test]
fn authorization_passes_only_when_configured() {
    let s = TestServer::with(&[("env", ENV_SCRIPT)], |c| c.pass_authorization = true);
    let r = s.exchange(b"GET /cgi-bin/env HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer abc\r\nConnection: close\r\n\r\n");
    assert_eq!(r.var("HTTP_AUTHORIZATION").as_deref(), Some("Bearer abc"));
    assert_eq!(r.var("AUTH_TYPE").as_deref(), Some("Bearer"));
}

#[test]
fn repeated_headers_are_joined() {
    let s = env_server();
    let r = s.exchange(b"GET /cgi-bin/env HTTP/1.1\r\nHost: x\r\nAccept: a/b\r\nAccept: c/d\r\nCookie: a=1\r\nCookie: b=2\r\nConnection: close\r\n\r\n");
    assert_eq!(r.var("HTTP_ACCEPT").as_deref(), Some("a/b, c/d"));
    assert_eq!(r.var("HTTP_COOKIE").as_deref(), Some("a=1; b=2"));
}

#[test]
fn indexed_query_becomes_argv() {
    let s = env_server();
    let r = s.get("/cgi-bin/proc?first+second%20word");
    assert_eq!(r.var("ARGC").as_deref(), Some("2"));
    assert_eq!(r.var("ARG1").as_deref(), Some("first"));
    assert_eq!(r.var("ARG2").as_deref(), Some("second word"));
    assert_eq!(s.get("/cgi-bin/proc?a=b").var("ARGC").as_deref(), Some("0"));
    assert_eq!(
        s.get("/cgi-bin/proc?a+%zz").var("ARGC").as_deref(),
        Some("0")
    );
}

#[test]
fn script_runs_in_its_directory_in_its_own_group_with_default_signals() {
    let s = env_server();
    let r = s.get("/cgi-bin/proc");
    let cgi = std::fs::canonicalize(s.cgi_dir()).unwrap();
    assert_eq!(r.var("CWD"), Some(cgi.display().to_string()));
    assert_eq!(r.var("PGID"), r.var("PID"), "own process group");
    assert!(!sigpipe_ignored(&r), "SIGPIPE must be at its default");
    assert_eq!(r.var("SIGBLK").as_deref(), Some("0000000000000000"));
}

#[test]
fn subdirectory_scripts_run_in_their_directory() {
    let s = TestServer::start(&[("a/b/proc", PROC_SCRIPT), ("a/b/env", ENV_SCRIPT)]);
    let r = s.get("/cgi-bin/a/b/proc");
    let dir = std::fs::canonicalize(s.cgi_dir().join("a/b")).unwrap();
    assert_eq!(r.var("CWD"), Some(dir.display().to_string()));
    let r = s.get("/cgi-bin/a/b/env/x/y/");
    assert_eq!(r.var("SCRIPT_NAME").as_deref(), Some("/cgi-bin/a/b/env"));
    assert_eq!(r.var("PATH_INFO").as_deref(), Some("/x/y/"));
}

#[test]
fn stdin_is_a_pipe_or_file_never_the_socket() {
    let s = env_server();
    assert_eq!(
        s.get("/cgi-bin/proc").var("STDIN").as_deref(),
        Some("/dev/null")
    );
    let r = s.exchange(b"POST /cgi-bin/proc HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody");
    assert!(
        r.var("STDIN").unwrap().starts_with("pipe:"),
        "{:?}",
        r.var("STDIN")
    );
    assert_eq!(r.var("READ").as_deref(), Some("4"));
    let r = s.exchange(b"POST /cgi-bin/proc HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\nbody\r\n0\r\n\r\n");
    let stdin = r.var("STDIN").unwrap();
    assert!(!stdin.starts_with("socket:"), "{stdin}");
    assert_eq!(r.var("READ").as_deref(), Some("4"));
}

#[test]
fn no_server_descriptor_leaks_into_the_script() {
    let s = env_server();
    // Keep a few other connections open so there is something to leak.
    let _others: Vec<Client> = (0..3).map(|_| s.client()).collect();
    let r = s.get("/cgi-bin/proc");
    let fds: Vec<String> = r
        .text()
        .lines()
        .filter(|l| l.starts_with("FD "))
        .map(str::to_owned)
        .collect();
    assert!(fds.len() >= 3, "{fds:?}");
    for fd in &fds {
        let mut parts = fd.split_whitespace().skip(1);
        let num: u32 = parts.next().unwrap().parse().unwrap();
        let target = parts.next().unwrap_or("");
        if num > 2 {
            // The shell's own handles (the script file, the /proc directory it lists).
            assert!(
                !target.starts_with("socket:")
                    && !target.starts_with("pipe:")
                    && !target.starts_with("anon_inode:"),
                "leaked descriptor {fd}"
            );
        }
    }
}

#[test]
fn perl_and_python_scripts_run() {
    let s = TestServer::start(&[
        (
            "hello.pl",
            "#!/usr/bin/perl\nprint \"Content-Type: text/plain\\n\\n\";\nprint \"perl says $ENV{QUERY_STRING}\\n\";\n",
        ),
        (
            "upper.py",
            "#!/usr/bin/env python3\nimport os, sys\nn = int(os.environ.get('CONTENT_LENGTH') or 0)\ndata = sys.stdin.buffer.read(n)\nsys.stdout.write('Content-Type: text/plain\\r\\n\\r\\n')\nsys.stdout.write(data.decode().upper())\n",
        ),
    ]);
    assert_eq!(s.get("/cgi-bin/hello.pl?x=1").text(), "perl says x=1\n");
    let r = s.exchange(b"POST /cgi-bin/upper.py HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nshout");
    assert_eq!(r.text(), "SHOUT");
}

#[test]
fn interpreter_runs_files_without_a_shebang() {
    let s = TestServer::with(&[], |c| {
        c.interpreters = vec![("py".into(), PathBuf::from("/usr/bin/env"))];
    });
    // `env` as the "interpreter" runs the file name as a command: proof of argv[1].
    write_script(&s.cgi_dir().join("x.py"), "");
    std::fs::set_permissions(
        s.cgi_dir().join("x.py"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let s2 = TestServer::with(&[], |c| {
        c.interpreters = vec![("py".into(), PathBuf::from("/usr/bin/python3"))];
    });
    let script = s2.cgi_dir().join("plain.py");
    std::fs::write(
        &script,
        "print('Content-Type: text/plain')\nprint()\nprint('from a plain .py file')\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let r = s2.get("/cgi-bin/plain.py");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "from a plain .py file\n")
    );
    drop(s);
}

#[test]
fn fork_spawn_mode_runs_scripts_the_same() {
    let s = TestServer::with(
        &[
            ("env", ENV_SCRIPT),
            ("proc", PROC_SCRIPT),
            ("echo", ECHO_SCRIPT),
        ],
        |c| {
            c.spawn = SpawnMode::Fork;
        },
    );
    let r = s.get("/cgi-bin/env/p?q=1");
    assert_eq!(r.var("PATH_INFO").as_deref(), Some("/p"));
    let r = s.get("/cgi-bin/proc?w");
    assert_eq!(r.var("PGID"), r.var("PID"));
    assert_eq!(r.var("ARG1").as_deref(), Some("w"));
    assert!(!sigpipe_ignored(&r));
    let r = s.exchange(b"POST /cgi-bin/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc");
    assert_eq!(r.text(), "abc");
    let r = s.get("/cgi-bin/missing-interp");
    assert_eq!(r.status, 404);
}

#[test]
fn traversal_and_escapes_never_execute() {
    let s = TestServer::start(&[("env", ENV_SCRIPT)]);
    let marker = s.dir.path().join("executed");
    let outside = s.dir.path().join("outside");
    write_script(
        &outside,
        &format!(
            "#!/bin/sh\ntouch {}\nprintf 'Content-Type: text/plain\\r\\n\\r\\nescaped'\n",
            marker.display()
        ),
    );
    std::os::unix::fs::symlink(&outside, s.cgi_dir().join("link")).unwrap();
    std::os::unix::fs::symlink(s.dir.path(), s.cgi_dir().join("updir")).unwrap();
    for path in [
        "/cgi-bin/../outside",
        "/cgi-bin/%2e%2e/outside",
        "/cgi-bin/%2E%2E/outside",
        "/cgi-bin/.%2e/outside",
        "/cgi-bin/link",
        "/cgi-bin/updir/outside",
        "/cgi-bin/env%00",
        "/cgi-bin/env%00.txt",
        "/cgi-bin/..%2foutside",
        "/cgi-bin/%2e%2e%2foutside",
    ] {
        let r = s.get(path);
        assert!(
            matches!(r.status, 400 | 403 | 404),
            "{path} gave {}",
            r.status
        );
        assert!(!r.text().contains("escaped"), "{path}");
    }
    assert!(!marker.exists(), "a script outside the cgi-dir ran");
}

#[test]
fn non_executable_file_is_403_and_never_sent() {
    let s = TestServer::start(&[]);
    let file = s.cgi_dir().join("secret.sh");
    std::fs::write(&file, "#!/bin/sh\n# password=hunter2\n").unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let r = s.get("/cgi-bin/secret.sh");
    assert_eq!(r.status, 403);
    assert!(!r.text().contains("hunter2"));
    assert_eq!(s.get("/cgi-bin/").status, 403);
    assert_eq!(s.get("/cgi-bin").status, 403);
}
