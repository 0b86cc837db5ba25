#!/usr/bin/env bash
# How many of `ab -k`'s requests (HTTP/1.0 keep-alive) stay on kept connections, for
# a worker's answer and a CGI script's, on the bundled cgi-bin/:
#
#   scripts/keep-alive.sh [REQUESTS]        (default 5000, at 8 connections)
#   BIN=/path/to/cgi-testbed scripts/keep-alive.sh
#
# An HTTP/1.0 answer keeps its connection only with a Content-Length; ours has one
# when the whole answer was read before its head went out (benches/README.md says
# why the CGI share is lower). Needs ab (apache2-utils): installed with apt-get when
# missing and we are root. Listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5000}
need=()
command -v ab >/dev/null || need+=(apache2-utils)
. scripts/lib/measure.sh
install_missing "${need[@]}"
ours_binary
scratch
url=http://127.0.0.1:18197
"$BIN" --listen 127.0.0.1:18197 --workers-min 4 --workers-max 4 >/dev/null 2>"$tmp/err" &
server=$!
for _ in $(seq 50); do curl -sf "$url/cgi-bin/hello" >/dev/null && break; sleep 0.1; done
for path in /fcgi-bin/hello-rs /cgi-bin/hello; do
    # ab counts answers of another length than the first as failed: each worker answer
    # names its own request count, so only the kept count is read here.
    kept=$(ab -k -n "$n" -c 8 "$url$path" 2>/dev/null | awk '/Keep-Alive requests/ { print $3 }')
    awk -v p="$path" -v k="${kept:-0}" -v n="$n" \
        'BEGIN { printf "%-20s %5d of %d requests on kept connections (%.1f%%)\n", p, k, n, 100 * k / n }'
done
