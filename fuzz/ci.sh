#!/usr/bin/env bash
# Fuzz smoke test for CI: build every target, replay its checked-in corpus
# (fuzz/corpus/<target>, -runs=0), then fuzz each one for FUZZ_SECONDS (default 20;
# 0 skips the bounded runs) and replay the old crashers in fuzz/artifacts-found/.
# Exits non-zero on any crash, timeout, OOM or build error.
#
#   bash fuzz/ci.sh                   # from anywhere in the repository
#   FUZZ_SECONDS=0 bash fuzz/ci.sh    # replay only (~2 min from a cold build here)
#
# Needs the nightly toolchain (FUZZ_TOOLCHAIN, default "nightly") and cargo-fuzz,
# which it installs when missing (`cargo install cargo-fuzz --locked`: about 45 s on
# a 2-core machine with the crates.io index already fetched).
set -euo pipefail

cd "$(dirname "$0")/.."
TOOLCHAIN=${FUZZ_TOOLCHAIN:-nightly}
SECONDS_EACH=${FUZZ_SECONDS:-20}
TARGETS=(http_request cgi_response fastcgi_records path_resolution)

start=$(date +%s)
if ! cargo "+$TOOLCHAIN" fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    t0=$(date +%s)
    cargo install cargo-fuzz --locked
    echo "== cargo-fuzz installed in $(($(date +%s) - t0)) s"
fi

echo "== building ${TARGETS[*]}"
cargo "+$TOOLCHAIN" fuzz build

dict_for() {
    case $1 in
        http_request | cgi_response) echo "-dict=fuzz/dict/http.dict" ;;
        path_resolution) echo "-dict=fuzz/dict/path.dict" ;;
    esac
}

work=$(mktemp -d "${TMPDIR:-/tmp}/cgi-testbed-fuzz-ci.XXXXXX")
trap 'rm -rf "$work"' EXIT
# path_resolution builds its file tree under $TMPDIR: keep it in the scratch dir.
export TMPDIR="$work"
failed=()
for t in "${TARGETS[@]}"; do
    echo "== $t: replaying fuzz/corpus/$t"
    if ! cargo "+$TOOLCHAIN" fuzz run "$t" "fuzz/corpus/$t" -- -runs=0 \
        -artifact_prefix="$work/" >"$work/$t.replay.log" 2>&1; then
        tail -n 40 "$work/$t.replay.log"
        failed+=("$t (replay)")
        continue
    fi
    grep -E "DONE|INITED" "$work/$t.replay.log" | tail -n 1 || true
    if [ "$SECONDS_EACH" -gt 0 ]; then
        echo "== $t: fuzzing for ${SECONDS_EACH} s"
        mkdir -p "$work/corpus-$t"
        # New inputs go to the scratch corpus: the checked-in seeds stay as they are.
        # shellcheck disable=SC2046
        if ! cargo "+$TOOLCHAIN" fuzz run "$t" "$work/corpus-$t" "fuzz/corpus/$t" -- \
            -max_total_time="$SECONDS_EACH" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
            $(dict_for "$t") >"$work/$t.run.log" 2>&1; then
            tail -n 60 "$work/$t.run.log"
            failed+=("$t (fuzzing; input saved under fuzz/artifacts/$t/)")
            continue
        fi
        grep -E "DONE|Done [0-9]+ runs" "$work/$t.run.log" | tail -n 2 || true
    fi
done

# Inputs that once crashed a target (fuzz/artifacts-found/<target>-<what>, bugs since
# fixed): replayed as regression tests.
for f in fuzz/artifacts-found/*; do
    [ -f "$f" ] || continue
    t=$(basename "$f")
    t=${t%%-*}
    if cargo "+$TOOLCHAIN" fuzz run "$t" "$f" -- -artifact_prefix="$work/" \
        >"$work/regression.log" 2>&1; then
        echo "== regression input ok: $f"
    else
        tail -n 30 "$work/regression.log"
        failed+=("$t (regression input $f)")
    fi
done

echo "== fuzz CI took $(($(date +%s) - start)) s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "all ${#TARGETS[@]} fuzz targets passed"
