#!/usr/bin/env bash
# cgi-testbed against nginx and lighttpd, on identical programs, in the same run:
#
#   cgi-c      a static C hello (scripts/vs-nginx/hello-cgi.c) as CGI:
#              ours /cgi-bin/ · lighttpd mod_cgi · nginx + fcgiwrap
#   cgi-sh     the bundled sh hello as CGI, the same three ways
#   fcgi-c     a libfcgi C hello (scripts/vs-nginx/hello.c), 4 workers:
#              ours /fcgi-bin/ · nginx -> 4 spawn-fcgi workers on unix sockets
#   fcgi-php   cgi-bin/hello.php under php-cgi, 4 workers:
#              ours /fcgi-bin/ · nginx -> 4 `php-cgi -b` workers on unix sockets
#   static     a 6-byte file: ours --root · nginx · lighttpd
#
# Our workers run under SCHED_BATCH (--worker-sched); spawn-fcgi leaves nginx's at
# SCHED_OTHER. So that the FastCGI rows compare servers and not only that policy,
# they also ask nginx-batch: the same nginx in front of 4 more workers of each
# program, started under `chrt --batch`.
#
# The CGI rows also print the spawn ceiling (scripts/vs-nginx/spawn-ceiling.c): one
# posix_spawn + waitpid loop per core running the same program with no server at
# all, measured in every round between the servers' runs. No server can run the
# program more often than that, so it bounds every ratio in the row.
#
# Each is asked by wrk at 8 keep-alive connections, in turns, ROUNDS times, and the
# C programs ROUNDS times more at 1 connection for the median latency (it moves
# between runs with where the scheduler puts the client, server and program). A
# table of req/s with ratios (ours / reference) and the load average comes out on
# stdout.
#
#   scripts/vs-nginx.sh [SECONDS_PER_RUN] [ROUNDS]        (defaults: 5 and 3)
#   BASE=/path/to/other/cgi-testbed scripts/vs-nginx.sh   (adds a column: that binary,
#                                                          e.g. an older build)
#   ONLY="cgi-c fcgi-c" scripts/vs-nginx.sh               (a subset of the rows)
#
# Needs nginx, lighttpd, fcgiwrap, spawn-fcgi, php-cgi, libfcgi-dev, gcc (static libc)
# and wrk: installed with apt-get when missing and we are root. Everything listens on
# 127.0.0.1 and is stopped at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
rounds=${2:-3}
only=${ONLY:-cgi-c cgi-sh fcgi-c fcgi-php static}
need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v lighttpd >/dev/null || need+=(lighttpd)
command -v fcgiwrap >/dev/null || [ -x /usr/sbin/fcgiwrap ] || need+=(fcgiwrap)
command -v spawn-fcgi >/dev/null || need+=(spawn-fcgi)
command -v php-cgi >/dev/null || need+=(php-cgi)
command -v wrk >/dev/null || need+=(wrk)
[ -e /usr/include/fcgi_stdio.h ] || need+=(libfcgi-dev)
command -v gcc >/dev/null || need+=(gcc libc6-dev)
. scripts/lib/measure.sh
install_missing "${need[@]}"

tmp=$(mktemp -d)
# nginx and fcgiwrap workers run as www-data: they must reach everything in here.
chmod 755 "$tmp"
pids=()
cleanup() {
    # Stop everything even when a step finds nothing to stop (set -e applies here too).
    set +e
    [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ -f "$tmp/spawned" ]; then
        # Each is its own session leader; a group kill also stops fcgiwrap's children
        # without its parent starting new ones.
        while read -r p; do kill -- "-$p"; done <"$tmp/spawned" 2>/dev/null
    fi
    pkill -f "$tmp/" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# spawn-fcgi detaches its workers; remember them to stop them (php-cgi's command line
# does not name our directory).
# spawn-fcgi runs under "${run[@]}" (a chrt, or nothing).
run=()
spawn() { "${run[@]}" spawn-fcgi "$@" | grep -o 'PID: [0-9]*' | awk '{print $2}' >>"$tmp/spawned"; }

# The programs, identical for every server.
mkdir -p "$tmp/cgi" "$tmp/www"
gcc -O2 -static -o "$tmp/cgi/hello-c" scripts/vs-nginx/hello-cgi.c
gcc -O2 -o "$tmp/cgi/hello-fcgi" scripts/vs-nginx/hello.c -lfcgi
gcc -O2 -o "$tmp/spawn-ceiling" scripts/vs-nginx/spawn-ceiling.c
cp cgi-bin/hello cgi-bin/hello.php "$tmp/cgi/"
printf 'hello\n' >"$tmp/www/small.txt"
chmod -R a+rX "$tmp"

# nginx: static files, CGI through fcgiwrap, FastCGI to 4 workers of each program.
for i in 1 2 3 4; do
    for batch in "" b; do
        run=()
        if [ -n "$batch" ]; then run=(chrt --batch 0); fi
        spawn -s "$tmp/c$batch$i.sock" -M 0666 -- "$tmp/cgi/hello-fcgi"
        PHP_FCGI_CHILDREN=0 PHP_FCGI_MAX_REQUESTS=0 \
            spawn -s "$tmp/p$batch$i.sock" -M 0666 -- "$(command -v php-cgi)"
    done
done
run=()
fcgiwrap=$(command -v fcgiwrap || echo /usr/sbin/fcgiwrap)
spawn -s "$tmp/wrap.sock" -M 0666 -- "$fcgiwrap" -c 4
cat >"$tmp/nginx.conf" <<CONF
worker_processes 2;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  # No upstream keepalive: a libfcgi worker serves one connection at a time, and
  # pooled connections would starve the others.
  upstream c { server unix:$tmp/c1.sock; server unix:$tmp/c2.sock;
               server unix:$tmp/c3.sock; server unix:$tmp/c4.sock; }
  upstream p { server unix:$tmp/p1.sock; server unix:$tmp/p2.sock;
               server unix:$tmp/p3.sock; server unix:$tmp/p4.sock; }
  upstream cb { server unix:$tmp/cb1.sock; server unix:$tmp/cb2.sock;
                server unix:$tmp/cb3.sock; server unix:$tmp/cb4.sock; }
  upstream pb { server unix:$tmp/pb1.sock; server unix:$tmp/pb2.sock;
                server unix:$tmp/pb3.sock; server unix:$tmp/pb4.sock; }
  server { listen 127.0.0.1:18186;
    root $tmp/www;
    location ~ ^/cgi-bin/(.+)\$ { fastcgi_pass unix:$tmp/wrap.sock;
      include /etc/nginx/fastcgi_params; fastcgi_param SCRIPT_FILENAME $tmp/cgi/\$1; }
    location = /fcgi-bin/hello-fcgi { fastcgi_pass c; include /etc/nginx/fastcgi_params; }
    location = /fcgi-bin/hello.php { fastcgi_pass p; include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $tmp/cgi/hello.php; }
  }
  server { listen 127.0.0.1:18189;
    location = /fcgi-bin/hello-fcgi { fastcgi_pass cb; include /etc/nginx/fastcgi_params; }
    location = /fcgi-bin/hello.php { fastcgi_pass pb; include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $tmp/cgi/hello.php; }
  }
}
CONF
nginx -c "$tmp/nginx.conf" -p "$tmp"

# lighttpd: static files and mod_cgi (its own fork+exec per request).
cat >"$tmp/lighttpd.conf" <<CONF
server.document-root = "$tmp/www"
server.bind = "127.0.0.1"
server.port = 18187
server.errorlog = "$tmp/lighttpd-error.log"
server.modules = ( "mod_alias", "mod_cgi" )
server.stream-response-body = 1
alias.url = ( "/cgi-bin/" => "$tmp/cgi/" )
\$HTTP["url"] =~ "^/cgi-bin/" { cgi.assign = ( "" => "" ) }
CONF
lighttpd -D -f "$tmp/lighttpd.conf" &
pids+=($!)

# Ours, and BASE if given: one server each for everything, four workers per program.
cargo build --release -q
start_ours() {
    "$1" --listen "127.0.0.1:$2" --cgi-dir "$tmp/cgi" --root "$tmp/www" \
        --workers-min 4 --workers-max 4 >"$tmp/ours-$2.out" 2>"$tmp/ours-$2.err" &
    pids+=($!)
}
start_ours target/release/cgi-testbed 18185
[ -n "${BASE:-}" ] && start_ours "$BASE" 18188
sleep 1

# Requests per second, refusing a run with errors or non-2xx answers (a misconfigured
# backend answers 502 very fast).
rate() {
    local out
    out=$(wrk -t2 -c8 -d"${secs}s" "$1")
    if grep -qE "Non-2xx|Socket errors" <<<"$out"; then
        echo "error: failed answers from $1:" >&2
        echo "$out" >&2
        tail -n 20 "$tmp"/ours-*.err >&2
        exit 1
    fi
    awk '/Requests\/sec/ {print int($2)}' <<<"$out"
}
# Median latency at one connection, in microseconds.
p50() {
    wrk -t1 -c1 -d"${secs}s" --latency "$1" | awk '$1 == "50%" {
        v = $2; u = 1
        if (v ~ /us$/) { sub(/us$/, "", v) } else if (v ~ /ms$/) { sub(/ms$/, "", v); u = 1000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); u = 1000000 }
        printf "%d", v * u }'
}
check() { curl -sf "$1" >/dev/null || { echo "broken: $1" >&2; exit 1; }; }

declare -A path=(
    [cgi-c]=/cgi-bin/hello-c [cgi-sh]=/cgi-bin/hello [fcgi-c]=/fcgi-bin/hello-fcgi
    [fcgi-php]=/fcgi-bin/hello.php [static]=/small.txt)
# Which reference servers run each row (nginx 18186, lighttpd 18187, nginx in front
# of SCHED_BATCH workers 18189).
declare -A refs=(
    [cgi-c]="18187 18186" [cgi-sh]="18187 18186" [fcgi-c]="18186 18189"
    [fcgi-php]="18186 18189" [static]="18186 18187")
declare -A name=([18185]=cgi-testbed [18186]=nginx [18187]=lighttpd [18188]=base
    [18189]=nginx-batch [ceiling]=spawn-ceiling)
declare -A program=([cgi-c]=hello-c [cgi-sh]=hello)
# Starts per second of the row's program without a server.
ceiling() { "$tmp/spawn-ceiling" "$tmp/cgi/${program[$1]}" "$secs" "$(nproc)"; }

for row in $only; do
    ports="18185 ${BASE:+18188} ${refs[$row]}"
    against=${refs[$row]}
    if [ -n "${program[$row]:-}" ]; then against+=" ceiling"; fi
    for p in $ports; do
        check "http://127.0.0.1:$p${path[$row]}"
        wrk -t2 -c8 -d1s "http://127.0.0.1:$p${path[$row]}" >/dev/null
    done
    header="row       round"
    for p in $ports; do header+=$(printf '  %12s' "${name[$p]}"); done
    if [[ $against == *ceiling ]]; then header+=$(printf '  %13s' "${name[ceiling]}"); fi
    for p in $against; do header+=$(printf '  %10s' "/${p/#18*/${name[$p]}}"); done
    echo "$header          (req/s, 8 connections, ${secs}s each)"
    for r in $(seq 1 "$rounds"); do
        declare -A got=()
        line=$(printf '%-9s %5d' "$row" "$r")
        for p in $ports; do
            got[$p]=$(rate "http://127.0.0.1:$p${path[$row]}")
            line+=$(printf '  %12d' "${got[$p]}")
        done
        if [[ $against == *ceiling ]]; then
            got[ceiling]=$(ceiling "$row")
            line+=$(printf '  %13d' "${got[ceiling]}")
        fi
        for p in $against; do
            line+=$(awk -v a="${got[18185]}" -v b="${got[$p]}" 'BEGIN { printf "  %9.2fx", a / b }')
        done
        echo "$line"
        unset got
    done
    if [ "$row" = cgi-c ] || [ "$row" = fcgi-c ]; then
        for r in $(seq 1 "$rounds"); do
            line=$(printf '%-9s %5s' "$row" "p50-$r")
            for p in $ports; do line+=$(printf '  %10sus' "$(p50 "http://127.0.0.1:$p${path[$row]}")"); done
            echo "$line          (median latency, 1 connection)"
        done
    fi
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
