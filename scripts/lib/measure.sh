# Sourced by the measuring scripts: installs the Debian packages named, when some
# are missing and we are root; otherwise names them and exits.

# install_missing PACKAGE...: an empty list does nothing.
install_missing() {
    [ $# -gt 0 ] || return 0
    if [ "$(id -u)" = 0 ]; then
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
    else
        echo "missing: $*" >&2
        exit 1
    fi
}
