#!/usr/bin/env bash
# Does starting scripts hold up the rest of the server? A 6-byte file is asked for at
# one connection while eight connections run the static C CGI hello of
# scripts/vs-nginx.sh; prints the file's latency and both rates.
#
#   scripts/mixed-load.sh [LOOPS...]                   (default: 1 2)
#   BIN=/path/to/other/cgi-testbed scripts/mixed-load.sh 1 2
#
# Needs wrk and gcc (apt-get installs them when root). Listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for t in wrk gcc; do command -v $t >/dev/null || need+=($t); done
. scripts/lib/measure.sh
install_missing "${need[@]}"
ours_binary
scratch
mkdir -p "$tmp/cgi" "$tmp/www"
gcc -O2 -static -o "$tmp/cgi/hello-c" scripts/vs-nginx/hello-cgi.c
printf 'hello\n' >"$tmp/www/small.txt"
url=http://127.0.0.1:18196
echo "$BIN, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for loops in "${@:-1 2}"; do
    for l in $loops; do
        "$BIN" --listen 127.0.0.1:18196 --cgi-dir "$tmp/cgi" --root "$tmp/www" \
            --loops "$l" >/dev/null 2>"$tmp/err" &
        server=$!
        sleep 1
        curl -sf "$url/cgi-bin/hello-c" >/dev/null || { cat "$tmp/err" >&2; exit 1; }
        wrk -t1 -c8 -d6s "$url/cgi-bin/hello-c" >"$tmp/cgi.txt" &
        load=$!
        sleep 1
        file=$(wrk -t1 -c1 -d4s --latency "$url/small.txt" | awk '
            $1 == "50%" { p50 = $2 } $1 == "99%" { p99 = $2 }
            /Requests\/sec/ { rate = int($2) }
            END { printf "small file p50 %s p99 %s, %d req/s", p50, p99, rate }')
        wait $load
        cgi=$(awk '/Requests\/sec/ { print int($2) }' "$tmp/cgi.txt")
        echo "--loops $l: $file; CGI hello $cgi req/s"
        kill "$server"
        wait "$server" 2>/dev/null || true
        server=
    done
done
