#!/usr/bin/env bash
# Worker mode against the reference: nginx driving four C libfcgi workers over unix
# sockets, and cgi-testbed driving four hello-rs workers, each asked for a hello by
# wrk at 8 keep-alive connections, in turns, in the same run.
#
#   scripts/vs-nginx.sh [SECONDS_PER_RUN] [ROUNDS]     (defaults: 5 and 3)
#
# Needs nginx, spawn-fcgi, libfcgi-dev, gcc and wrk (installed with apt-get when
# missing and we are root). Everything listens on 127.0.0.1 and is stopped at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
rounds=${2:-3}
need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v spawn-fcgi >/dev/null || need+=(spawn-fcgi)
command -v wrk >/dev/null || need+=(wrk)
[ -e /usr/include/fcgi_stdio.h ] || need+=(libfcgi-dev)
command -v gcc >/dev/null || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
    else
        echo "missing: ${need[*]}" >&2
        exit 1
    fi
fi

tmp=$(mktemp -d)
# nginx workers run as www-data: they must reach the sockets in here.
chmod 755 "$tmp"
cleanup() {
    [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
    pkill -f "$tmp/hello" 2>/dev/null || true
    [ -n "${ours:-}" ] && kill "$ours" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

gcc -O2 -o "$tmp/hello" scripts/vs-nginx/hello.c -lfcgi
for i in 1 2 3 4; do
    spawn-fcgi -s "$tmp/w$i.sock" -M 0666 -- "$tmp/hello" >/dev/null
done
cat >"$tmp/nginx.conf" <<CONF
worker_processes 2;
pid $tmp/nginx.pid;
error_log $tmp/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  # No upstream keepalive: a libfcgi worker serves one connection at a time, and
  # pooled connections would starve the others.
  upstream fc { server unix:$tmp/w1.sock; server unix:$tmp/w2.sock;
                server unix:$tmp/w3.sock; server unix:$tmp/w4.sock; }
  server { listen 127.0.0.1:18186;
    location / { fastcgi_pass fc; include /etc/nginx/fastcgi_params; } }
}
CONF
nginx -c "$tmp/nginx.conf" -p "$tmp"

cargo build --release -q
target/release/cgi-testbed --listen 127.0.0.1:18185 --workers-max 4 --workers-min 4 \
    >"$tmp/ours.out" 2>"$tmp/ours.err" &
ours=$!
sleep 1

# Requests per second, refusing a run with non-2xx answers (a misconfigured backend
# answers 502 very fast).
rate() {
    local out
    out=$(wrk -t2 -c8 -d"${secs}s" "$1")
    if grep -q "Non-2xx" <<<"$out"; then
        echo "error: non-2xx answers from $1:" >&2
        echo "$out" >&2
        exit 1
    fi
    awk '/Requests\/sec/ {print int($2)}' <<<"$out"
}
curl -sf http://127.0.0.1:18186/ >/dev/null || { echo "nginx path broken" >&2; exit 1; }
curl -sf http://127.0.0.1:18185/fcgi-bin/hello-rs >/dev/null || { echo "our path broken" >&2; exit 1; }
wrk -t2 -c8 -d1s http://127.0.0.1:18185/fcgi-bin/hello-rs >/dev/null
wrk -t2 -c8 -d1s http://127.0.0.1:18186/ >/dev/null
echo "round  cgi-testbed(hello-rs x4)  nginx(libfcgi C x4)   req/s, 8 connections, ${secs}s each"
for r in $(seq 1 "$rounds"); do
    a=$(rate http://127.0.0.1:18185/fcgi-bin/hello-rs)
    b=$(rate http://127.0.0.1:18186/)
    printf '%5d  %24d  %19d\n' "$r" "$a" "$b"
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
