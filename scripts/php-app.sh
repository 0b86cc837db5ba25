#!/usr/bin/env bash
# A real PHP application from Debian's packages, served where it lives: DokuWiki
# (file-based, no database server) run in place with php-cgi by cgi-testbed and by
# lighttpd, each as CGI and as FastCGI, over the same directory; the same walk through
# it (scripts/php-app/flow.py: start page and every stylesheet, script and image, a
# page edited through its form with the session cookie, the POST and the redirect,
# read back; paths that must not leak source) must give the same transcript.
#
#   scripts/php-app.sh [DIR]       (DIR: where the wiki goes; default a temp dir)
#
#   cgi-testbed --root DIR/app --index doku.php --cgi-ext php=/usr/bin/php-cgi
#   cgi-testbed --root DIR/app --index doku.php --fcgi-ext php=/usr/bin/php-cgi
#   lighttpd    cgi.assign = ( ".php" => "/usr/bin/php-cgi" )
#   lighttpd    fastcgi.server = ( ".php" => (( "bin-path" => "/usr/bin/php-cgi", ... )) )
#
# Needs dokuwiki, php-cgi and lighttpd (installed with apt-get when missing and we are
# root). Everything listens on 127.0.0.1 and is stopped at exit. Exits 1 on any
# difference that flow.py does not explain, printing it. tests/php_app.rs runs the
# cgi-testbed half in cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
[ -f /usr/share/dokuwiki/doku.php ] || need+=(dokuwiki)
command -v php-cgi >/dev/null || need+=(php-cgi)
command -v lighttpd >/dev/null || [ -x /usr/sbin/lighttpd ] || need+=(lighttpd)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends "${need[@]}"
    else
        echo "missing: ${need[*]}" >&2
        exit 1
    fi
fi
lighttpd=$(command -v lighttpd || echo /usr/sbin/lighttpd)
py=$(PATH=/usr/local/bin:/usr/bin:/bin command -v python3)

tmp=$(mktemp -d)
wiki=${1:-$tmp/wiki}
server=""
stop() {
    if [ -n "$server" ]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
        server=""
    fi
}
trap 'stop; rm -rf "$tmp"' EXIT

scripts/php-app/instance.sh "$wiki"
cargo build -q
port=18231

# Waits for 127.0.0.1:$port to answer, up to 10 s.
wait_port() {
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$port/" && return 0
        sleep 0.1
    done
    echo "nothing answers on port $port" >&2
    return 1
}

# NAME, then the command that serves the wiki on $port: a fresh copy of the data,
# the server, the walk, the server stopped.
walk() {
    local name=$1
    shift
    scripts/php-app/instance.sh "$wiki" --data
    "$@" >"$tmp/$name.log" 2>&1 &
    server=$!
    wait_port
    if ! "$py" scripts/php-app/flow.py "http://127.0.0.1:$port" >"$tmp/$name.txt"; then
        cat "$tmp/$name.txt" "$tmp/$name.log" >&2
        echo "$name: the walk failed" >&2
        exit 1
    fi
    stop
    port=$((port + 1))
    echo "$name: $(tail -1 "$tmp/$name.txt")"
}

ours() {
    exec target/debug/cgi-testbed --listen "127.0.0.1:$port" --root "$wiki/app" \
        --index doku.php "$@"
}

lighttpd_conf() {
    cat <<CONF
server.document-root = "$wiki/app"
server.bind = "127.0.0.1"
server.port = $port
server.errorlog = "$tmp/lighttpd-$port.error.log"
server.upload-dirs = ( "$tmp" )
server.modules = ( "mod_cgi", "mod_fastcgi" )
include_shell "/usr/share/lighttpd/create-mime.conf.pl"
index-file.names = ( "doku.php" )
static-file.exclude-extensions = ( ".php" )
CONF
}

lighttpd_cgi() {
    { lighttpd_conf; echo 'cgi.assign = ( ".php" => "/usr/bin/php-cgi" )'; } >"$tmp/cgi.conf"
    exec "$lighttpd" -D -f "$tmp/cgi.conf"
}

lighttpd_fastcgi() {
    {
        lighttpd_conf
        cat <<CONF
fastcgi.server = ( ".php" => (( "socket" => "$tmp/php.sock", "bin-path" => "/usr/bin/php-cgi",
    "max-procs" => 1, "bin-environment" => ( "PHP_FCGI_CHILDREN" => "0",
    "PHP_FCGI_MAX_REQUESTS" => "0" ) )) )
CONF
    } >"$tmp/fastcgi.conf"
    exec "$lighttpd" -D -f "$tmp/fastcgi.conf"
}

walk ours-cgi ours --cgi-ext php=/usr/bin/php-cgi
walk ours-fastcgi ours --fcgi-ext php=/usr/bin/php-cgi
walk lighttpd-cgi lighttpd_cgi
walk lighttpd-fastcgi lighttpd_fastcgi

status=0
for pair in "lighttpd-cgi ours-cgi" "lighttpd-fastcgi ours-fastcgi" "ours-cgi ours-fastcgi"; do
    set -- $pair
    echo
    echo "== $1 vs $2"
    "$py" scripts/php-app/flow.py --compare "$tmp/$1.txt" "$tmp/$2.txt" || status=1
done
exit $status
