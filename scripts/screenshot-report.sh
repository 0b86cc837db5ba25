#!/usr/bin/env bash
# The report page in a real browser: takes a headless Chromium screenshot of
# REPORT_DIR/index.html (the self-contained page `cgi-testbed report` writes) and fails
# if the picture is blank. Without an index.html there, it first writes a quick report
# into REPORT_DIR (`cgi-testbed report --quick`, 1–2 minutes).
#
#   scripts/screenshot-report.sh [REPORT_DIR [OUT.png]]   default docs/report, docs/report.png
#
# Skips (exit 0) when Chromium is not installed: apt-get install chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-docs/report}
out=${2:-docs/report.png}

browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
    echo "skip: no chromium on PATH (apt-get install chromium)"
    exit 0
fi

if [ ! -f "$dir/index.html" ]; then
    cargo run --release --quiet -- report --quick --out "$dir"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mkdir -p "$(dirname "$out")"
rm -f "$out"
# The page needs nothing from the network: a file:// URL is all it gets.
"$browser" --headless --no-sandbox --disable-gpu --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$tmp/profile" \
    --screenshot="$(realpath -m "$out")" --window-size=1200,1800 \
    "file://$(realpath "$dir/index.html")" \
    >"$tmp/chromium.log" 2>&1 || { cat "$tmp/chromium.log" >&2; exit 1; }

# Not blank: a page of text and plots has many shades (anti-aliasing); a blank one a few.
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
