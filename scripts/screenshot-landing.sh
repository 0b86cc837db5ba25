#!/usr/bin/env bash
# The landing page in a real browser: starts cgi-testbed on a free port over the
# bundled cgi-bin (what `cargo run` shows a new user), takes a headless Chromium
# screenshot of http://127.0.0.1:PORT/ and fails if the picture is blank.
#
#   scripts/screenshot-landing.sh [OUT.png]      default docs/landing.png
#
# Skips (exit 0) when Chromium is not installed: apt-get install chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/landing.png}

. scripts/lib/screenshot.sh
find_browser

cargo build --quiet
tmp=$(mktemp -d)
server=
cleanup() {
    # Stop everything even when a step finds nothing to stop (set -e applies here too).
    set +e
    # SIGTERM is how any test suite stops the server.
    if [ -n "$server" ]; then kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

target/debug/cgi-testbed --listen 127.0.0.1:0 >"$tmp/stdout" 2>"$tmp/stderr" &
server=$!
# The first stdout line is `listening on http://ADDR` once the socket is bound.
for _ in $(seq 100); do
    grep -q '^listening on ' "$tmp/stdout" 2>/dev/null && break
    sleep 0.1
done
url=$(sed -n 's/^listening on //p' "$tmp/stdout" | head -n1)
if [ -z "$url" ]; then
    echo "server did not start:" >&2
    cat "$tmp/stderr" >&2
    exit 1
fi

screenshot "$url/" "$out" 1200x800 "$tmp/profile"
