#!/usr/bin/env bash
# ci/engines/fetch.sh [ENGINE...]: install server engines from their Debian suites into the tool cache, never
# onto the system (issue 13). Engines and their pinned versions: ci/engines/engines.env (default: all).
#
# For each engine, in $RCH_CACHE/engines:
#   apt/<engine>/        a private apt configuration (own sources list, lists, dpkg status, archives) for the
#                        engine's suites, trusting the host's Debian archive keyring; removed once fetched
#   <engine>-<version>/  root/  the server and tools packages at their pinned Debian version plus their
#                              runtime dependency closure (glibc included) from the same suites, unpacked
#                              with dpkg-deb -x
#                        bin/   wrappers (redis-server, redis-cli, and for Valkey valkey-server, valkey-cli)
#                              running the binary under the root's own dynamic loader and libraries: the
#                              trixie and forky builds need a newer glibc than the host's
#                        packages.txt  the packages unpacked (name version sha256), .complete  the pin
# Idempotent: an engine whose .complete matches its pin is not fetched again (no network). Prints the time
# of each engine; on failure one line naming the engine and the step (details in the engine's fetch.log).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../cache.sh
. "$HERE/../cache.sh"
# shellcheck source=engines.env
. "$HERE/engines.env"

KEYRING=${DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
# The host's Debian mirrors (as ci/images/build.sh finds them): the archive, then the security archive.
MIRROR=${DEBIAN_MIRROR:-$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-$(awk '/^URIs:/{n++} /^URIs:/ && n==2 {print $2; exit}' \
  /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# Packages the engines' packages depend on that a process needs none of (service manager, account tools):
# the private dpkg status says they are installed, so apt leaves them out of the closure.
STAND_INS="systemd adduser init-system-helpers"

ENGINES_DIR=$RCH_CACHE/engines

die() { echo "fetch.sh: $*" >&2; exit 1; }

var() { # var ENGINE FIELD: the value of <PREFIX>_<FIELD> in engines.env
  local prefix
  prefix=$(echo "$1" | tr 'a-z.-' 'A-Z__')
  local name="${prefix}_$2"
  [ -n "${!name:-}" ] || die "$1: no $name in ci/engines/engines.env"
  printf '%s\n' "${!name}"
}

# step LOG WHAT COMMAND...: run COMMAND with its output in LOG; on failure one line (WHAT and LOG's last line).
step() {
  local log=$1 what=$2
  shift 2
  echo "+ $*" >>"$log"
  if ! "$@" >>"$log" 2>&1; then
    local last
    last=$(grep -v '^+ ' "$log" | grep -E '^(E:|W:|Error|error)' | tail -1 || true)
    [ -n "$last" ] || last=$(tail -1 "$log")
    die "$engine: $what failed: $last (log: $log)"
  fi
}

fetch_engine() {
  local engine=$1 version debver suites packages binaries
  version=$(var "$engine" VERSION)
  debver=$(var "$engine" DEBIAN_VERSION)
  suites=$(var "$engine" SUITES)
  packages=$(var "$engine" PACKAGES)
  binaries=$(var "$engine" BINARIES)
  local dir=$ENGINES_DIR/$engine-$version apt=$ENGINES_DIR/apt/$engine
  local pin="$engine $version $debver $packages"
  if [ -f "$dir/.complete" ] && [ "$(cat "$dir/.complete")" = "$pin" ]; then
    echo "$engine $version: cached ($dir)"
    return 0
  fi
  local start=$SECONDS
  rm -rf "$dir" "$apt"
  mkdir -p "$dir" "$apt"/etc/apt.conf.d "$apt"/etc/preferences.d "$apt"/state/lists/partial \
    "$apt"/cache/archives/partial
  local log=$dir/fetch.log
  : >"$log"

  # Private apt: its own sources, state and cache; the host's configuration is not read.
  local suite uri
  : >"$apt/etc/sources.list"
  for suite in $suites; do
    uri=$MIRROR
    case $suite in *-security) uri=$SECURITY_MIRROR ;; esac
    echo "deb [signed-by=$KEYRING] $uri $suite main" >>"$apt/etc/sources.list"
  done
  : >"$apt/state/status"
  local p
  for p in $STAND_INS; do
    printf 'Package: %s\nStatus: install ok installed\nArchitecture: all\nVersion: 999\nMaintainer: none\nDescription: stand-in\n\n' \
      "$p" >>"$apt/state/status"
  done
  local opts=(-q -o "Dir::Etc=$apt/etc" -o "Dir::Etc::sourcelist=$apt/etc/sources.list"
    -o Dir::Etc::sourceparts=- -o "Dir::Etc::parts=$apt/etc/apt.conf.d"
    -o "Dir::Etc::preferencesparts=$apt/etc/preferences.d" -o "Dir::Etc::trusted=/nonexistent"
    -o "Dir::Etc::trustedparts=/nonexistent" -o "Dir::State=$apt/state"
    -o "Dir::State::status=$apt/state/status" -o "Dir::Cache=$apt/cache" -o "Dir::Log=$apt"
    -o APT::Architecture=amd64 -o APT::Install-Recommends=false -o APT::Sandbox::User=root
    -o Debug::NoLocking=true -o APT::Get::AllowUnauthenticated=false)
  step "$log" "apt-get update ($suites)" apt-get "${opts[@]}" update
  # apt-get update exits 0 when a source cannot be read: an unreadable suite is an error here.
  local unread
  unread=$(grep -E '^(W|E|Err):? .*(Failed to fetch|Could not|Unable to|not signed|NO_PUBKEY|Temporary failure)' "$log" |
    head -1 || true)
  [ -z "$unread" ] || die "$engine: apt-get update could not read $suites: $unread (log: $log)"
  local p wanted=()
  for p in $packages; do
    local cand
    cand=$(apt-cache "${opts[@]}" policy "$p" | awk '/Candidate:/{print $2}')
    echo "$p candidate: $cand" >>"$log"
    [ -n "$cand" ] && [ "$cand" != "(none)" ] || die "$engine: $p is not in $suites"
    apt-cache "${opts[@]}" madison "$p" | awk -F'|' '{gsub(/ /,"",$2); print $2}' | grep -qxF "$debver" ||
      die "$engine: $p $debver is not in $suites (it has $cand): update the pin in ci/engines/engines.env"
    wanted+=("$p=$debver")
  done
  step "$log" "resolving and downloading ${wanted[*]}" apt-get "${opts[@]}" -y --download-only install "${wanted[@]}"

  # Unpack every downloaded package; record name, version, sha256; check the pinned ones.
  mkdir -p "$dir/root"
  local deb name debversion
  : >"$dir/packages.txt"
  for deb in "$apt"/cache/archives/*.deb; do
    [ -e "$deb" ] || die "$engine: apt downloaded no package (log: $log)"
    name=$(dpkg-deb -f "$deb" Package)
    debversion=$(dpkg-deb -f "$deb" Version)
    echo "$name $debversion $(sha256sum "$deb" | cut -d' ' -f1)" >>"$dir/packages.txt"
    step "$log" "dpkg-deb -x $name" dpkg-deb -x "$deb" "$dir/root"
  done
  for p in $packages; do
    grep -qxE "$p ${debver//+/\\+} [0-9a-f]{64}" "$dir/packages.txt" ||
      die "$engine: unpacked $p is not $debver (see $dir/packages.txt)"
  done
  local loader=$dir/root/lib64/ld-linux-x86-64.so.2
  [ -e "$loader" ] || loader=$dir/root/usr/lib64/ld-linux-x86-64.so.2
  [ -e "$loader" ] || die "$engine: no dynamic loader in $dir/root (libc6 not in the closure?)"

  # Wrappers: the binary under the root's own loader and libraries (the host's glibc may be older).
  mkdir -p "$dir/bin"
  local server=${binaries%% *} cli=${binaries##* } target alias
  for target in "$server" "$cli"; do
    [ -x "$dir/root/usr/bin/$target" ] || die "$engine: $target is not in ${packages}"
    for alias in "$target" "redis-${target#*-}"; do
      cat >"$dir/bin/$alias" <<EOF
#!/bin/sh
# $engine $version ($debver, Debian $suites): written by ci/engines/fetch.sh
root=\$(cd "\$(dirname "\$0")/../root" && pwd)
if [ -d "\$root/usr/lib/x86_64-linux-gnu/ossl-modules" ]; then
  OPENSSL_MODULES=\$root/usr/lib/x86_64-linux-gnu/ossl-modules
  export OPENSSL_MODULES
fi
exec "\$root/${loader#"$dir/root/"}" --library-path "\$root/lib/x86_64-linux-gnu:\$root/usr/lib/x86_64-linux-gnu" \\
  "\$root/usr/bin/$target" "\$@"
EOF
      chmod +x "$dir/bin/$alias"
    done
  done

  # Verify: the server runs under the wrapper and reports the pinned upstream version.
  local said
  said=$("$dir/bin/$server" --version 2>>"$log") || die "$engine: $dir/bin/$server --version failed (log: $log)"
  echo "$said" >>"$log"
  case $said in *"v=$version "*) ;; *) die "$engine: $server says '$said', expected v=$version" ;; esac
  said=$("$dir/bin/$cli" --version 2>>"$log") || die "$engine: $dir/bin/$cli --version failed (log: $log)"
  case $said in *"$version"*) ;; *) die "$engine: $cli says '$said', expected $version" ;; esac

  local downloaded
  downloaded=$(du -ch "$apt"/cache/archives/*.deb | tail -1 | cut -f1)
  rm -rf "$apt" # the lists (about 30 MB a suite) serve the next fetch no better than a fresh update
  echo "$pin" >"$dir/.complete"
  echo "$engine $version ($debver): fetched in $((SECONDS - start))s, $(wc -l <"$dir/packages.txt") packages" \
    "($downloaded downloaded), root $(du -sh "$dir/root" | cut -f1) ($dir)"
}

main() {
  local engines=("$@") engine
  [ ${#engines[@]} -gt 0 ] || read -r -a engines <<<"$ENGINES"
  for engine in "${engines[@]}"; do
    case " $ENGINES " in *" $engine "*) ;; *) die "unknown engine '$engine' (engines: $ENGINES)" ;; esac
  done
  command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || die "needs apt-get and dpkg-deb (Debian)"
  [ -r "$KEYRING" ] || die "no Debian archive keyring at $KEYRING"
  for engine in "${engines[@]}"; do
    fetch_engine "$engine"
  done
}

main "$@"
