#!/usr/bin/env bash
# Installs the Debian packages named that are not installed yet (one apt-get for all of them);
# a warm machine pays only for the dpkg query. Used by scripts/setup*.sh.
#   scripts/install-packages.sh WHO PACKAGE...     WHO prefixes the one line said when installing
set -euo pipefail
who="$1"
shift
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]})) || exit 0
echo "$who: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
