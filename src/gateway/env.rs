//! Request → RFC 3875 meta-variables (§4.1) and command-line words (§4.4); pure, and
//! the one builder both CGI and FastCGI use.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use crate::http::head::Request;
use crate::net::Endpoints;
use crate::route::Script;

pub use super::vars::MetaVars;

/// What scripts get as PATH unless `--env`/`--pass-env` say otherwise.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Server-wide inputs to the environment.
#[derive(Debug, Clone)]
pub struct Site {
    pub server_software: String,
    pub document_root: std::path::PathBuf,
    /// `--env` and `--pass-env`, already resolved; they win over our defaults.
    pub extra: Vec<(String, Vec<u8>)>,
    pub pass_authorization: bool,
}

/// Builds the environment for `script` answering `req`. `content_length` is the body's
/// length after transfer-codings were removed, `None` when the request has no body.
pub fn meta_variables(
    req: &Request,
    script: &Script,
    ends: Endpoints,
    content_length: Option<u64>,
    site: &Site,
) -> MetaVars {
    let mut env = MetaVars::with_capacity(32 + req.headers.len(), 1024);
    // Writing into a Vec cannot fail.
    let number = |n: u64| {
        move |b: &mut Vec<u8>| {
            let _ = write!(b, "{n}");
        }
    };
    let (path, query) = req.path_and_query();
    env.push("PATH", DEFAULT_PATH.as_bytes());
    env.push("GATEWAY_INTERFACE", b"CGI/1.1");
    env.push("SERVER_SOFTWARE", site.server_software.as_bytes());
    env.push("SERVER_PROTOCOL", req.version.as_str().as_bytes());
    env.push_with("SERVER_NAME", |b| server_name(b, req, ends.local.ip()));
    env.push_with("SERVER_PORT", number(ends.local.port().into()));
    env.push_with("SERVER_ADDR", |b| plain_ip(b, ends.local.ip()));
    env.push_with("REMOTE_ADDR", |b| plain_ip(b, ends.remote.ip()));
    // RFC 3875 §4.1.9 allows the address when the name is not looked up.
    env.push_with("REMOTE_HOST", |b| plain_ip(b, ends.remote.ip()));
    env.push_with("REMOTE_PORT", number(ends.remote.port().into()));
    env.push("REQUEST_METHOD", req.method.as_bytes());
    env.push_with("REQUEST_URI", |b| {
        b.extend_from_slice(path.as_bytes());
        if let Some(q) = query {
            b.push(b'?');
            b.extend_from_slice(q.as_bytes());
        }
    });
    env.push("QUERY_STRING", query.unwrap_or("").as_bytes());
    env.push("SCRIPT_NAME", script.script_name.as_bytes());
    env.push(
        "SCRIPT_FILENAME",
        script.file.as_os_str().as_encoded_bytes(),
    );
    env.push("PATH_INFO", script.path_info.as_bytes());
    if !script.path_info.is_empty() {
        env.push_with("PATH_TRANSLATED", |b| {
            join_root(b, &site.document_root, &script.path_info);
        });
    }
    env.push(
        "DOCUMENT_ROOT",
        site.document_root.as_os_str().as_encoded_bytes(),
    );
    // php-cgi built with force-cgi-redirect refuses to run without it.
    env.push("REDIRECT_STATUS", b"200");
    if let Some(n) = content_length {
        env.push_with("CONTENT_LENGTH", number(n));
    }
    if let Some(t) = req.header("content-type") {
        env.push("CONTENT_TYPE", t);
    }
    if let Some(scheme) = req.header("authorization").and_then(auth_scheme) {
        env.push("AUTH_TYPE", scheme);
    }
    add_http_vars(&mut env, req, site.pass_authorization);
    for (name, value) in &site.extra {
        env.set(name, value);
    }
    env
}

/// One `HTTP_*` variable per request header, merging repeats, minus the headers that
/// must not reach a script.
fn add_http_vars(env: &mut MetaVars, req: &Request, pass_authorization: bool) {
    let first_http = env.len();
    for (name, value) in &req.headers {
        // `X_Foo` would alias `X-Foo`; anything but letters, digits and '-' is dropped.
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            continue;
        }
        let is = |h: &str| name.eq_ignore_ascii_case(h);
        // Carried as CONTENT_LENGTH / CONTENT_TYPE, or describe framing we removed;
        // httpoxy: HTTP_PROXY is read as the outbound proxy by many HTTP clients.
        let skip = [
            "content-length",
            "content-type",
            "transfer-encoding",
            "proxy",
            "proxy-authorization",
        ]
        .into_iter()
        .any(is)
            || (is("authorization") && !pass_authorization);
        if skip {
            continue;
        }
        let joiner: &[u8] = if is("cookie") { b"; " } else { b", " };
        match env.position_where(first_http, |var| is_http_var_of(var, name)) {
            Some(i) => env.extend_value(i, joiner, value),
            None => env.push_named(
                |b| {
                    b.extend_from_slice(b"HTTP_");
                    b.extend(name.bytes().map(http_var_byte));
                },
                |b| b.extend_from_slice(value),
            ),
        }
    }
}

/// `Accept-Language` → `ACCEPT_LANGUAGE`, a byte at a time.
fn http_var_byte(b: u8) -> u8 {
    if b == b'-' {
        b'_'
    } else {
        b.to_ascii_uppercase()
    }
}

/// Is `var` the `HTTP_*` name of `header`?
fn is_http_var_of(var: &[u8], header: &str) -> bool {
    var.strip_prefix(b"HTTP_").is_some_and(|rest| {
        rest.len() == header.len()
            && rest
                .iter()
                .zip(header.bytes())
                .all(|(&v, h)| v == http_var_byte(h))
    })
}

/// The scheme token of an Authorization value (`Basic`, `Bearer`, ...).
fn auth_scheme(value: &[u8]) -> Option<&[u8]> {
    let end = value
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(value.len());
    let scheme = &value[..end];
    (!scheme.is_empty() && scheme.iter().all(|&b| crate::http::head::is_token(b))).then_some(scheme)
}

/// Host without its port (RFC 3875 §4.1.14), lower-cased; IPv6 literals keep their
/// brackets. The head parser let only ASCII through.
fn server_name(out: &mut Vec<u8>, req: &Request, local: IpAddr) {
    let host = req.host().unwrap_or_default();
    let name = if host.starts_with(b"[") {
        let end = host
            .iter()
            .position(|&b| b == b']')
            .map_or(host.len(), |i| i + 1);
        &host[..end]
    } else {
        let end = host.iter().position(|&b| b == b':').unwrap_or(host.len());
        &host[..end]
    };
    if name.is_empty() {
        match local {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                let _ = write!(out, "[{v6}]");
            }
            ip => plain_ip(out, ip),
        }
    } else {
        out.extend(name.iter().map(u8::to_ascii_lowercase));
    }
}

/// An address as scripts expect it: IPv4-mapped IPv6 shown as IPv4, no brackets.
fn plain_ip(out: &mut Vec<u8>, ip: IpAddr) {
    // Writing into a Vec cannot fail.
    let _ = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => write!(out, "{v4}"),
            None => write!(out, "{v6}"),
        },
        IpAddr::V4(v4) => write!(out, "{v4}"),
    };
}

fn join_root(out: &mut Vec<u8>, root: &Path, path_info: &str) {
    let root = root.as_os_str().as_encoded_bytes();
    let end = root.len() - root.iter().rev().take_while(|&&b| b == b'/').count();
    out.extend_from_slice(&root[..end]);
    out.extend_from_slice(path_info.as_bytes());
}

/// RFC 3875 §4.4: a GET or HEAD query without an unencoded `=` is split on `+` into
/// decoded words for argv; if any word cannot be represented, there are no words.
pub fn argv_from_query(method: &str, query: Option<&str>) -> Vec<Vec<u8>> {
    let Some(q) = query else { return Vec::new() };
    if !(method == "GET" || method == "HEAD") || q.is_empty() || q.contains('=') {
        return Vec::new();
    }
    let words: Option<Vec<Vec<u8>>> = q.split('+').map(percent_decode_word).collect();
    words.unwrap_or_default()
}

fn percent_decode_word(w: &str) -> Option<Vec<u8>> {
    crate::paths::percent_decode(w.as_bytes()).filter(|word| !word.contains(&0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head;
    use std::path::PathBuf;

    fn req(s: &str) -> Request {
        head::parse(s.as_bytes(), 65536).unwrap().unwrap().0
    }

    fn script(path_info: &str) -> Script {
        Script {
            script_name: "/cgi-bin/env".into(),
            path_info: path_info.into(),
            file: PathBuf::from("/srv/cgi-bin/env"),
            nph: false,
            interpreter: None,
        }
    }

    fn site() -> Site {
        Site {
            server_software: "cgi-testbed/0.1.0".into(),
            document_root: PathBuf::from("/srv"),
            extra: vec![("FOO".into(), b"bar".to_vec())],
            pass_authorization: false,
        }
    }

    fn ends() -> Endpoints {
        Endpoints {
            remote: "10.0.0.9:5555".parse().unwrap(),
            local: "127.0.0.1:8080".parse().unwrap(),
        }
    }

    fn vars(r: &str, path_info: &str, len: Option<u64>) -> MetaVars {
        meta_variables(&req(r), &script(path_info), ends(), len, &site())
    }

    fn get<'a>(env: &'a MetaVars, name: &str) -> Option<&'a str> {
        let mut found = env.iter().filter(|(n, _)| *n == name);
        let first = found.next().map(|(_, v)| std::str::from_utf8(v).unwrap());
        assert!(found.next().is_none(), "{name} set twice");
        first
    }

    #[test]
    fn standard_variables() {
        let env = vars(
            "GET /cgi-bin/env/a%20b?x=1 HTTP/1.1\r\nHost: Example.org:8080\r\n\r\n",
            "/a b",
            None,
        );
        assert_eq!(get(&env, "GATEWAY_INTERFACE"), Some("CGI/1.1"));
        assert_eq!(get(&env, "SERVER_NAME"), Some("example.org"));
        assert_eq!(get(&env, "SERVER_PORT"), Some("8080"));
        assert_eq!(get(&env, "SERVER_PROTOCOL"), Some("HTTP/1.1"));
        assert_eq!(get(&env, "SERVER_SOFTWARE"), Some("cgi-testbed/0.1.0"));
        assert_eq!(get(&env, "REMOTE_ADDR"), Some("10.0.0.9"));
        assert_eq!(get(&env, "REMOTE_PORT"), Some("5555"));
        assert_eq!(get(&env, "REQUEST_METHOD"), Some("GET"));
        assert_eq!(get(&env, "QUERY_STRING"), Some("x=1"));
        assert_eq!(get(&env, "REQUEST_URI"), Some("/cgi-bin/env/a%20b?x=1"));
        assert_eq!(get(&env, "SCRIPT_NAME"), Some("/cgi-bin/env"));
        assert_eq!(get(&env, "SCRIPT_FILENAME"), Some("/srv/cgi-bin/env"));
        assert_eq!(get(&env, "PATH_INFO"), Some("/a b"));
        assert_eq!(get(&env, "PATH_TRANSLATED"), Some("/srv/a b"));
        assert_eq!(get(&env, "REDIRECT_STATUS"), Some("200"));
        assert_eq!(get(&env, "CONTENT_LENGTH"), None);
        assert_eq!(get(&env, "FOO"), Some("bar"));
        assert_eq!(get(&env, "PATH"), Some(DEFAULT_PATH));
    }

    #[test]
    fn empty_query_and_path_info() {
        let env = vars("GET /cgi-bin/env HTTP/1.0\r\n\r\n", "", None);
        assert_eq!(get(&env, "QUERY_STRING"), Some(""));
        assert_eq!(get(&env, "PATH_INFO"), Some(""));
        assert_eq!(get(&env, "PATH_TRANSLATED"), None);
        assert_eq!(get(&env, "SERVER_NAME"), Some("127.0.0.1"));
        assert_eq!(get(&env, "SERVER_PROTOCOL"), Some("HTTP/1.0"));
    }

    #[test]
    fn body_variables_are_not_duplicated() {
        let r = "POST /cgi-bin/env HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
        let env = vars(r, "", Some(11));
        assert_eq!(get(&env, "CONTENT_LENGTH"), Some("11"));
        assert_eq!(get(&env, "CONTENT_TYPE"), Some("text/plain"));
        assert_eq!(get(&env, "HTTP_CONTENT_TYPE"), None);
        assert_eq!(get(&env, "HTTP_CONTENT_LENGTH"), None);
        assert_eq!(get(&env, "HTTP_TRANSFER_ENCODING"), None);
    }

    #[test]
    fn hostile_headers() {
        let r = "GET / HTTP/1.1\r\nHost: x\r\nProxy: http://evil\r\nX_Forwarded: 1\r\nX-Forwarded: 2\r\nAuthorization: Basic Zm9vOmJhcg==\r\nProxy-Authorization: Basic x\r\n\r\n";
        let env = vars(r, "", None);
        assert_eq!(get(&env, "HTTP_PROXY"), None);
        assert_eq!(get(&env, "HTTP_X_FORWARDED"), Some("2"));
        assert_eq!(get(&env, "HTTP_AUTHORIZATION"), None);
        assert_eq!(get(&env, "HTTP_PROXY_AUTHORIZATION"), None);
        assert_eq!(get(&env, "AUTH_TYPE"), Some("Basic"));
        let mut s = site();
        s.pass_authorization = true;
        let env = meta_variables(&req(r), &script(""), ends(), None, &s);
        assert_eq!(get(&env, "HTTP_AUTHORIZATION"), Some("Basic Zm9vOmJhcg=="));
    }

    #[test]
    fn repeated_headers_merge() {
        let r = "GET / HTTP/1.1\r\nHost: x\r\nAccept: a\r\naccept: b\r\nCookie: c=1\r\nCookie: d=2\r\n\r\n";
        let env = vars(r, "", None);
        assert_eq!(get(&env, "HTTP_ACCEPT"), Some("a, b"));
        assert_eq!(get(&env, "HTTP_COOKIE"), Some("c=1; d=2"));
        assert_eq!(get(&env, "HTTP_HOST"), Some("x"));
    }

    #[test]
    fn ipv6_endpoints() {
        let e = Endpoints {
            remote: "[::1]:4000".parse().unwrap(),
            local: "[::ffff:127.0.0.1]:80".parse().unwrap(),
        };
        let env = meta_variables(
            &req("GET / HTTP/1.0\r\n\r\n"),
            &script(""),
            e,
            None,
            &site(),
        );
        assert_eq!(get(&env, "REMOTE_ADDR"), Some("::1"));
        assert_eq!(get(&env, "SERVER_ADDR"), Some("127.0.0.1"));
        let env = vars("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", "", None);
        assert_eq!(get(&env, "SERVER_NAME"), Some("[::1]"));
    }

    #[test]
    fn argv_rules() {
        assert_eq!(
            argv_from_query("GET", Some("a+b%20c")),
            vec![b"a".to_vec(), b"b c".to_vec()]
        );
        assert!(argv_from_query("GET", Some("a=b")).is_empty());
        assert!(argv_from_query("POST", Some("a+b")).is_empty());
        assert!(argv_from_query("GET", Some("a+%zz")).is_empty());
        assert!(argv_from_query("GET", Some("a+%00")).is_empty());
        assert!(argv_from_query("GET", Some("a+%+f")).is_empty());
        assert!(argv_from_query("GET", None).is_empty());
    }
}
