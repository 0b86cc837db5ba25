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

. scripts/lib/screenshot.sh
find_browser

if [ ! -f "$dir/index.html" ]; then
    cargo run --release --quiet -- report --quick --out "$dir"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The page needs nothing from the network: a file:// URL is all it gets.
screenshot "file://$(realpath "$dir/index.html")" "$out" 1200x1800 "$tmp/profile"
