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

browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
    echo "skip: no chromium on PATH (apt-get install chromium)"
    exit 0
fi

cargo build --quiet
tmp=$(mktemp -d)
server=
cleanup() {
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

mkdir -p "$(dirname "$out")"
rm -f "$out"
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$tmp/profile" \
    --screenshot="$(realpath -m "$out")" --window-size=1200,800 "$url/" \
    >"$tmp/chromium.log" 2>&1 || { cat "$tmp/chromium.log" >&2; exit 1; }

# Not blank: a page of text has many shades (anti-aliasing); a blank one has a few.
python3 - "$out" <<'PY'
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, size = 8, b"", None
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        size = struct.unpack(">II", body[:8])
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
shades = len(set(zlib.decompress(idat)))
print(f"{sys.argv[1]}: {size[0]}x{size[1]}, {len(data)} bytes, {shades} distinct byte values")
if shades < 32:
    sys.exit("the screenshot looks blank")
PY
