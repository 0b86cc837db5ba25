# Sourced by the measuring scripts: the Debian packages they need, and the binary they
# measure.

# install_missing PACKAGE...: installs them when we are root, otherwise names them and
# exits; an empty list does nothing.
install_missing() {
    [ $# -gt 0 ] || return 0
    if [ "$(id -u)" = 0 ]; then
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
    else
        echo "missing: $*" >&2
        exit 1
    fi
}

# Sets BIN to the server to measure: BIN as given, or a release build of this tree.
ours_binary() {
    if [ -z "${BIN:-}" ]; then
        cargo build --release -q
        BIN=target/release/cgi-testbed
    fi
}

# scratch: makes the directory $tmp and, on exit, stops $server (with the script's
# own stop_server when it defines one, else a kill) and removes $tmp.
scratch() {
    tmp=$(mktemp -d)
    server=
    trap scratch_cleanup EXIT
}
scratch_cleanup() {
    # Stop everything even when a step finds nothing to stop (set -e applies here too).
    set +e
    if [ -n "$server" ]; then
        if declare -F stop_server >/dev/null; then
            stop_server
        else
            kill "$server" 2>/dev/null
            wait "$server" 2>/dev/null
        fi
    fi
    rm -rf "$tmp"
}
