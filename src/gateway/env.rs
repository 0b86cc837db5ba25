//! Request → RFC 3875 meta-variables (§4.1) and command-line words (§4.4); pure, and
//! the one builder both CGI and FastCGI use.

use std::net::IpAddr;
use std::path::Path;

use crate::http::head::Request;
use crate::net::Endpoints;
use crate::route::Script;

/// A script's environment in order: (name, value bytes).
pub type MetaVars = Vec<(String, Vec<u8>)>;

/// What scripts get as PATH unless `--env`/`--pass-env` say otherwise.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Server-wide inputs to the environment.
#[derive(Debug, Clone)]
pub struct Site {
    pub server_software: String,
    pub document_root: std::path::PathBuf,
    /// `--env` and `--pass-env`, already resolved; they win over our defaults.
    pub extra: MetaVars,
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
    let mut env = MetaVars::with_capacity(32 + req.headers.len());
    let mut set = |name: &str, value: &[u8]| env.push((name.to_owned(), value.to_vec()));
    let (path, query) = req.path_and_query();
    set("PATH", DEFAULT_PATH.as_bytes());
    set("GATEWAY_INTERFACE", b"CGI/1.1");
    set("SERVER_SOFTWARE", site.server_software.as_bytes());
    set("SERVER_PROTOCOL", req.version.as_str().as_bytes());
    set("SERVER_NAME", server_name(req, ends.local.ip()).as_bytes());
    set("SERVER_PORT", ends.local.port().to_string().as_bytes());
    set("SERVER_ADDR", plain_ip(ends.local.ip()).as_bytes());
    set("REMOTE_ADDR", plain_ip(ends.remote.ip()).as_bytes());
    // RFC 3875 §4.1.9 allows the address when the name is not looked up.
    set("REMOTE_HOST", plain_ip(ends.remote.ip()).as_bytes());
    set("REMOTE_PORT", ends.remote.port().to_string().as_bytes());
    set("REQUEST_METHOD", req.method.as_bytes());
    set("REQUEST_URI", request_uri(path, query).as_bytes());
    set("QUERY_STRING", query.unwrap_or("").as_bytes());
    set("SCRIPT_NAME", script.script_name.as_bytes());
    set(
        "SCRIPT_FILENAME",
        script.file.as_os_str().as_encoded_bytes(),
    );
    set("PATH_INFO", script.path_info.as_bytes());
    if !script.path_info.is_empty() {
        let translated = join_root(&site.document_root, &script.path_info);
        set("PATH_TRANSLATED", translated.as_bytes());
    }
    set(
        "DOCUMENT_ROOT",
        site.document_root.as_os_str().as_encoded_bytes(),
    );
    // php-cgi built with force-cgi-redirect refuses to run without it.
    set("REDIRECT_STATUS", b"200");
    if let Some(n) = content_length {
        set("CONTENT_LENGTH", n.to_string().as_bytes());
    }
    if let Some(t) = req.header("content-type") {
        set("CONTENT_TYPE", t);
    }
    if let Some(scheme) = req.header("authorization").and_then(auth_scheme) {
        set("AUTH_TYPE", scheme);
    }
    add_http_vars(&mut env, req, site.pass_authorization);
    for (name, value) in &site.extra {
        match env.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1.clone_from(value),
            None => env.push((name.clone(), value.clone())),
        }
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
        let lower = name.to_ascii_lowercase();
        let skip = match lower.as_str() {
            // Carried as CONTENT_LENGTH / CONTENT_TYPE, or describe framing we removed.
            "content-length" | "content-type" | "transfer-encoding" => true,
            // httpoxy: HTTP_PROXY is read as the outbound proxy by many HTTP clients.
            "proxy" | "proxy-authorization" => true,
            "authorization" => !pass_authorization,
            _ => false,
        };
        if skip {
            continue;
        }
        let var = format!("HTTP_{}", lower.to_ascii_uppercase().replace('-', "_"));
        let joiner: &[u8] = if lower == "cookie" { b"; " } else { b", " };
        match env[first_http..].iter_mut().find(|(n, _)| *n == var) {
            Some((_, existing)) => {
                existing.extend_from_slice(joiner);
                existing.extend_from_slice(value);
            }
            None => env.push((var, value.clone())),
        }
    }
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

/// Host without its port (RFC 3875 §4.1.14); IPv6 literals keep their brackets.
fn server_name(req: &Request, local: IpAddr) -> String {
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
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => format!("[{v6}]"),
            ip => plain_ip(ip),
        }
    } else {
        String::from_utf8_lossy(name).to_ascii_lowercase()
    }
}

/// An address as scripts expect it: IPv4-mapped IPv6 shown as IPv4, no brackets.
fn plain_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

fn request_uri(path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    }
}

fn join_root(root: &Path, path_info: &str) -> String {
    let root = root.to_string_lossy();
    format!("{}{}", root.trim_end_matches('/'), path_info)
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
        let mut found = env.iter().filter(|(n, _)| n == name);
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
