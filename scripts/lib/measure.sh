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
