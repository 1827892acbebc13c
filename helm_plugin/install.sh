#!/bin/sh
# Creates the plugin's venv, helm_plugin/venv (= $HELM_PLUGIN_DIR/venv), and installs the redis-cluster-helm
# package into it.
# Run by Helm as the plugin's install hook (and update hook, with --upgrade), and by bin/helm-redis on first
# use when no hook ran. POSIX sh; needs python3 >= 3.11 with the venv module.
#
# What gets installed, first match wins:
#   1. $HELM_REDIS_PACKAGE: anything pip accepts (a wheel or sdist path, a URL, `redis-cluster-helm==0.1.0`).
#   2. The checkout this plugin directory lives in (../pyproject.toml of the real, symlink-resolved
#      directory names the redis-cluster-helm project): installed editable, so the plugin always runs the
#      checkout's current code. This is the case of `helm plugin install ./helm_plugin`, which symlinks.
#   3. A wheel bundled with the plugin (wheels/redis_cluster_helm-*.whl): the plugin's packages, made by
#      ci/plugin/package.sh, carry the wheel of the checkout they were made from. Its dependencies come
#      from the package index.
#   4. The PyPI name `redis-cluster-helm`. Not published yet: until it is, use 1, 2 or 3.
# Python: $HELM_REDIS_PYTHON, else the first of python3, python3.13, python3.12, python3.11 that is >= 3.11.
#
# Idempotent: when the venv already holds the same source (same pyproject.toml for a checkout, same file for
# a wheel), it does nothing; --upgrade (the update hook) installs again. pip's full output goes to
# venv/install.log; failures end with one line saying what went wrong.
set -eu

say() { printf 'helm redis: %s\n' "$*"; }
die() { printf 'helm redis: error: %s\n' "$*" >&2; exit 1; }

upgrade=false
for arg in "$@"; do
  case $arg in
    --upgrade) upgrade=true ;;
    *) die "install.sh: unknown argument '$arg' (usage: install.sh [--upgrade])" ;;
  esac
done

# This script's directory (helm_plugin/, as Helm sees it: $HELM_PLUGIN_DIR when plugin.yaml sits beside it).
plugin_dir=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
# The directory's real location: Helm symlinks local directories, and copies git clones and tarballs.
real_dir=$(CDPATH='' cd -P -- "$plugin_dir" && pwd)
# The venv lives at the real path: its scripts' #! lines name it, and a symlink (a temporary HELM_PLUGINS,
# a removed plugin link) may not outlive the venv.
venv=$real_dir/venv
stamp=$venv/.helm-redis-source
project=redis-cluster-helm

# healthy_venv: python runs and helm-redis's #! interpreter exists.
healthy_venv() {
  [ -x "$venv/bin/python" ] && [ -x "$venv/bin/helm-redis" ] &&
    [ -x "$(head -n 1 "$venv/bin/helm-redis" | sed 's/^#!//')" ] && "$venv/bin/python" -c '' >/dev/null 2>&1
}

# --- what to install --------------------------------------------------------------------------------------
checkout=$(dirname -- "$real_dir")
bundled=
for candidate in "$real_dir"/wheels/redis_cluster_helm-*.whl; do
  if [ -f "$candidate" ]; then bundled=$candidate; fi  # the last in name order, should there be several
done
if [ -n "${HELM_REDIS_PACKAGE:-}" ]; then
  spec=$HELM_REDIS_PACKAGE
  if [ -f "$spec" ]; then
    kind=file fingerprint="file $(cksum <"$spec")"
  elif [ -d "$spec" ]; then
    kind=file fingerprint="directory"
  else
    kind=name fingerprint="name"
  fi
  what="$spec (HELM_REDIS_PACKAGE)"
elif [ -f "$checkout/pyproject.toml" ] &&
  grep -q "^name = \"$project\"" "$checkout/pyproject.toml"; then
  spec=$checkout
  kind=checkout fingerprint="checkout $(cksum <"$checkout/pyproject.toml")"
  what="the checkout $checkout (editable)"
elif [ -n "$bundled" ]; then
  spec=$bundled
  kind=file fingerprint="file $(cksum <"$bundled")"
  what="the bundled wheel wheels/${bundled##*/}"
else
  spec=$project
  kind=name fingerprint="name"
  what="$project from the package index"
fi
want="$spec
$fingerprint"

if ! $upgrade && healthy_venv && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  say "venv up to date ($what): nothing to do"
  exit 0
fi

# --- a Python >= 3.11 -------------------------------------------------------------------------------------
python_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }
python=
if [ -n "${HELM_REDIS_PYTHON:-}" ]; then
  python_ok "$HELM_REDIS_PYTHON" || die "HELM_REDIS_PYTHON=$HELM_REDIS_PYTHON is not a Python >= 3.11"
  python=$HELM_REDIS_PYTHON
else
  for candidate in python3 python3.13 python3.12 python3.11; do
    if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
      python=$candidate
      break
    fi
  done
  [ -n "$python" ] ||
    die "no Python >= 3.11 found (tried python3, python3.13, python3.12, python3.11); \
install one or set HELM_REDIS_PYTHON"
fi

# --- the venv ---------------------------------------------------------------------------------------------
if ! healthy_venv; then
  say "creating $venv with $python ($("$python" -c 'import platform; print(platform.python_version())'))"
  if ! out=$("$python" -m venv --clear "$venv" 2>&1); then
    rm -rf "$venv"
    last=$(printf '%s\n' "$out" | grep -v '^[[:space:]]*$' | tail -n 1)
    die "$python -m venv failed: $last (Debian/Ubuntu: apt-get install python3-venv)"
  fi
fi

# --- the package ------------------------------------------------------------------------------------------
log=$venv/install.log
rm -f "$stamp"
say "installing $what (log: $log)"
: >"$log"
pip() { "$venv/bin/python" -m pip --disable-pip-version-check --no-input "$@" >>"$log" 2>&1; }
set -- install
$upgrade && set -- "$@" --upgrade
case $kind in
  checkout) set -- "$@" --editable "$spec" ;;
  file)
    # pip keeps an installed distribution of the same version: remove it so that the new file is used
    pip uninstall --yes "$project" || true
    set -- "$@" "$spec" ;;
  name) set -- "$@" "$spec" ;;
esac
if ! pip "$@"; then
  reason=$(grep -E '^(ERROR|error):' "$log" | tail -n 1)
  case $reason in
    *"No matching distribution found for $project"*)
      reason="$project is not on the package index (not published yet): \
install the plugin from its package (it bundles the wheel) or from a checkout of the repository, \
or set HELM_REDIS_PACKAGE to a wheel" ;;
  esac
  die "pip could not install $what: ${reason:-see $log} (log: $log)"
fi
"$venv/bin/helm-redis" --help >/dev/null 2>>"$log" || die "helm-redis does not start in $venv (log: $log)"
printf '%s\n' "$want" >"$stamp"
version=$("$venv/bin/python" -m pip show "$project" 2>/dev/null | sed -n 's/^Version: //p')
say "ready: $project ${version:-?} in $venv"
