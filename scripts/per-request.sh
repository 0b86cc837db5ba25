#!/usr/bin/env bash
# What one request costs the server itself: its own system calls (strace -c on the
# server's threads only, not the scripts or workers) and its heap allocations
# (heaptrack), for a static C CGI hello, a libfcgi C worker and a 6-byte file — the
# programs of scripts/vs-nginx.sh.
#
#   scripts/per-request.sh [REQUESTS]                 (default 2000)
#   BIN=/path/to/other/cgi-testbed scripts/per-request.sh   (measure that binary)
#
# System calls: wrk at 8 keep-alive connections for 3 s, divided by the requests wrk
# counted. Allocations: REQUESTS sequential requests on one connection, after 50 to
# warm up; a run with only the 50 is subtracted, so start-up does not count.
# Needs strace, heaptrack, wrk, gcc and libfcgi-dev (apt-get installs them when root).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
need=()
for t in strace heaptrack wrk gcc; do command -v $t >/dev/null || need+=($t); done
[ -e /usr/include/fcgi_stdio.h ] || need+=(libfcgi-dev)
. scripts/lib/measure.sh
install_missing "${need[@]}"
ours_binary
scratch
mkdir -p "$tmp/cgi" "$tmp/www"
gcc -O2 -static -o "$tmp/cgi/hello-c" scripts/vs-nginx/hello-cgi.c
gcc -O2 -o "$tmp/cgi/hello-fcgi" scripts/vs-nginx/hello.c -lfcgi
printf 'hello\n' >"$tmp/www/small.txt"
port=18195
start() {
    "$@" --listen "127.0.0.1:$port" --cgi-dir "$tmp/cgi" --root "$tmp/www" \
        --workers-min 4 --workers-max 4 >"$tmp/out" 2>"$tmp/err" &
    server=$!
    for _ in $(seq 50); do
        curl -sf "http://127.0.0.1:$port/small.txt" >/dev/null && return
        sleep 0.1
    done
    echo "the server did not start:" >&2
    cat "$tmp/err" >&2
    exit 1
}
stop_server() {
    # Under heaptrack, $server is its wrapper: signal the server itself.
    pkill -INT -f -- "--listen 127.0.0.1:$port" || true
    wait "$server" 2>/dev/null || true
    server=
}
# COUNT sequential requests for PATH on one keep-alive connection.
requests() {
    python3 - "$port" "$1" "$2" <<'PY'
import socket, sys
port, path, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port))
req = b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path.encode()
for _ in range(count):
    s.sendall(req)
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("connection closed")
        buf += chunk
        head, sep, body = buf.partition(b"\r\n\r\n")
        if not sep:
            continue
        low = head.lower()
        if b"content-length:" in low:
            if len(body) >= int(low.split(b"content-length:")[1].split(b"\r\n")[0]):
                break
        elif body.endswith(b"0\r\n\r\n"):
            break
PY
}
syscalls() {
    start "$BIN"
    requests "$1" 50
    wrk -t2 -c8 -d1s "http://127.0.0.1:$port$1" >/dev/null
    local tids
    tids=$(ls "/proc/$server/task" | sed 's/^/-p /' | tr '\n' ' ')
    # shellcheck disable=SC2086
    strace -c $tids -o "$tmp/strace" 2>/dev/null &
    local tracer=$!
    sleep 1
    local done
    done=$(wrk -t2 -c8 -d3s "http://127.0.0.1:$port$1" | awk '/requests in/ {print $1}')
    kill -INT $tracer
    wait $tracer 2>/dev/null || true
    stop_server
    awk -v n="$done" '
        $NF == "total" { total = $4 }
        NF >= 5 && $1 ~ /^[0-9.]+$/ && $NF != "total" { calls[$NF] = $4 }
        END {
            line = ""
            for (c in calls) if (calls[c] / n >= 0.05) line = line sprintf(" %s %.2f", c, calls[c] / n)
            printf "%.1f per request (%d requests):%s\n", total / n, n, line
        }' "$tmp/strace"
}
allocations() {
    local counts=()
    for extra in 0 "$n"; do
        start heaptrack -o "$tmp/heap" "$BIN"
        requests "$1" 50
        [ "$extra" = 0 ] || requests "$1" "$extra"
        stop_server
        counts+=("$(heaptrack_print -f "$tmp"/heap.*zst 2>/dev/null |
            awk '/^calls to allocation functions:/ {print $5}')")
        rm -f "$tmp"/heap.*
    done
    awk -v a="${counts[0]}" -v b="${counts[1]}" -v n="$n" \
        'BEGIN { printf "%.1f per request (%d requests)\n", (b - a) / n, n }'
}
echo "$BIN, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for path in /cgi-bin/hello-c /fcgi-bin/hello-fcgi /small.txt; do
    echo "$path"
    echo "  system calls: $(syscalls "$path")"
    echo "  allocations:  $(allocations "$path")"
done
