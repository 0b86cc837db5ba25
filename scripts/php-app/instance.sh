#!/usr/bin/env bash
# Makes a private, writable DokuWiki from Debian's package in DIR, to serve in place:
#
#   scripts/php-app/instance.sh DIR          make it (again)
#   scripts/php-app/instance.sh DIR --data   only start its data again
#
#   DIR/app    the application (/usr/share/dokuwiki): the document root. Debian links
#              lib/tpl/ and lib/plugins/ out of it into /var/lib/dokuwiki; the copy
#              holds them itself, since links that leave the root are not followed.
#   DIR/conf   its configuration (/etc/dokuwiki), plus local.php: no ACL (anyone may
#              edit), page names in PATH_INFO (/doku.php/wiki:syntax), data below.
#   DIR/data   its pages, cache and locks (/var/lib/dokuwiki/data): written to.
#   DIR/pristine-data   DIR/data as made, to start again from (--data).
#
# Outside the document root, neither conf nor data can be fetched by URL. Needs
# Debian's dokuwiki package (apt-get install dokuwiki) and read access to
# /var/lib/dokuwiki (root, or www-data).
set -euo pipefail
dir=${1:?usage: instance.sh DIR [--data]}
if [ "${2:-}" = --data ]; then
    rm -rf "$dir/data"
    cp -a "$dir/pristine-data" "$dir/data"
    exit 0
fi
app=/usr/share/dokuwiki
[ -f "$app/doku.php" ] || { echo "no DokuWiki at $app (apt-get install dokuwiki)" >&2; exit 1; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd -P)
rm -rf "$dir/app" "$dir/conf" "$dir/data" "$dir/pristine-data"
cp -rL "$app" "$dir/app"
cp -rL /etc/dokuwiki "$dir/conf"
cp -rL /var/lib/dokuwiki/data "$dir/pristine-data"
# Debian's preload points DokuWiki at /etc/dokuwiki; this one at the copy.
cat >"$dir/app/inc/preload.php" <<PHP
<?php
if (!defined('DOKU_CONF')) define('DOKU_CONF', '$dir/conf/');
PHP
cat >"$dir/conf/local.php" <<PHP
<?php
\$conf['title'] = 'cgi-testbed DokuWiki';
\$conf['savedir'] = '$dir/data';
\$conf['useacl'] = 0;
\$conf['userewrite'] = 2;
\$conf['lang'] = 'en';
PHP
cp -a "$dir/pristine-data" "$dir/data"
