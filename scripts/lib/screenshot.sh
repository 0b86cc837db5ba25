# Sourced by the screenshot scripts: a headless Chromium screenshot and a check that
# the picture is not blank.

# The browser, or exit 0 with a note when there is none.
find_browser() {
    browser=$(command -v chromium || command -v chromium-browser || true)
    if [ -z "$browser" ]; then
        echo "skip: no chromium on PATH (apt-get install chromium)"
        exit 0
    fi
}

# screenshot URL OUT.png WIDTHxHEIGHT PROFILE_DIR: the flags keep Chromium off the
# network (this machine's closed network refuses its background connections).
screenshot() {
    local url=$1 out=$2 size=$3 profile=$4
    mkdir -p "$(dirname "$out")"
    rm -f "$out"
    "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --hide-scrollbars --user-data-dir="$profile" \
        --screenshot="$(realpath -m "$out")" --window-size="${size/x/,}" "$url" \
        >"$profile.log" 2>&1 || { cat "$profile.log" >&2; exit 1; }
    not_blank "$out"
}

# A page of text has many shades (anti-aliasing); a blank one has a few.
not_blank() {
    python3 - "$1" <<'PY'
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
}
