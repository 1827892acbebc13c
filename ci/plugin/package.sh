#!/bin/sh
# Packages the Helm plugin (helm_plugin/) for release, into OUT_DIR:
#   redis-VERSION.tgz [+ .prov]  Helm 4: plugin.v1.yaml as plugin.yaml, made (and signed, with --key) by
#                                `helm plugin package`; `helm plugin install redis-VERSION.tgz` verifies it.
#   redis-VERSION-helm3.tgz      Helm 3.18+: the legacy plugin.yaml; plugin.yaml at the archive's root, as
#                                Helm 3's http(s) installer wants (it installs no local tarball).
# Both carry the project's wheel, built from this checkout (wheels/redis_cluster_helm-VERSION-*.whl), which
# install.sh installs when the plugin is not in a checkout; no venv, no __pycache__.
#
# usage: ci/plugin/package.sh OUT_DIR [--key NAME --keyring SECRET_KEYRING [--passphrase-file FILE]]
# Without --key the Helm 4 package is unsigned (installing it then needs --verify=false).
# Needs Helm 4 as $HELM (default: helm), python3 with pip ($PYTHON), tar and gzip.
set -eu

die() { printf 'package.sh: error: %s\n' "$*" >&2; exit 1; }
usage="usage: ci/plugin/package.sh OUT_DIR [--key NAME --keyring FILE [--passphrase-file FILE]]"

[ $# -ge 1 ] || die "$usage"
out=$1
shift
key= keyring= passphrase_file=
while [ $# -gt 0 ]; do
  case $1 in
    --key | --keyring | --passphrase-file) [ $# -ge 2 ] || die "$1 needs a value ($usage)" ;;
    *) die "unknown argument '$1' ($usage)" ;;
  esac
  case $1 in
    --key) key=$2 ;;
    --keyring) keyring=$2 ;;
    --passphrase-file) passphrase_file=$2 ;;
  esac
  shift 2
done
if [ -n "$key" ] && [ -z "$keyring" ]; then die "--key needs --keyring (the secret keyring file)"; fi
if [ -z "$key" ] && [ -n "$keyring$passphrase_file" ]; then die "--keyring and --passphrase-file need --key"; fi

repo=$(CDPATH='' cd -- "$(dirname -- "$0")/../.." && pwd)
src=$repo/helm_plugin
helm=${HELM:-helm}
python=${PYTHON:-python3}

case $("$helm" version --template '{{.Version}}' 2>/dev/null) in
  v4.*) ;;
  *) die "$helm is not Helm 4 (set HELM to a Helm 4 binary)" ;;
esac

# One version everywhere: the Helm 4 file, the legacy files (helm_plugin/ and the repository root's), the wheel.
field() { sed -n "s/^$1: *//p" "$2" | head -n 1; }
version=$(field version "$src/plugin.v1.yaml")
[ -n "$version" ] || die "no version in helm_plugin/plugin.v1.yaml"
for file in "$src/plugin.yaml" "$repo/plugin.yaml"; do
  [ "$(field version "$file")" = "$version" ] ||
    die "version $(field version "$file") in ${file#"$repo"/} differs from $version in helm_plugin/plugin.v1.yaml"
done

mkdir -p "$out"
out=$(CDPATH='' cd -- "$out" && pwd)
stage=$(mktemp -d "${TMPDIR:-/tmp}/helm-redis-package.XXXXXX")
trap 'rm -rf "$stage"' EXIT INT TERM

# --- the wheel --------------------------------------------------------------------------------------------
if ! "$python" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$stage/wheel" "$repo" \
  >"$stage/pip.log" 2>&1; then
  die "pip wheel failed: $(grep -v '^[[:space:]]*$' "$stage/pip.log" | tail -n 1)"
fi
set -- "$stage"/wheel/redis_cluster_helm-*.whl
[ $# -eq 1 ] && [ -f "$1" ] || die "pip wheel made no single redis_cluster_helm wheel"
wheel=$1
case ${wheel##*/} in
  "redis_cluster_helm-$version-"*) ;;
  *) die "the wheel ${wheel##*/} is not version $version (pyproject.toml and plugin.yaml disagree)" ;;
esac

# --- two plugin directories -------------------------------------------------------------------------------
for flavour in v1 helm3; do
  dir=$stage/$flavour/redis
  mkdir -p "$dir/wheels"
  for entry in "$src"/*; do
    case ${entry##*/} in
      venv | wheels | plugin.yaml | plugin.v1.yaml) ;;
      *) cp -R "$entry" "$dir/" ;;
    esac
  done
  find "$dir" -name __pycache__ -prune -exec rm -rf {} +
  cp "$wheel" "$dir/wheels/"
done
cp "$src/plugin.v1.yaml" "$stage/v1/redis/plugin.yaml"
cp "$src/plugin.yaml" "$stage/helm3/redis/plugin.yaml"

# --- Helm 4: helm plugin package (signs with --key) -------------------------------------------------------
rm -f "$out/redis-$version.tgz" "$out/redis-$version.tgz.prov" "$out/redis-$version-helm3.tgz"
if [ -n "$key" ]; then
  set -- --key "$key" --keyring "$keyring"
  [ -z "$passphrase_file" ] || set -- "$@" --passphrase-file "$passphrase_file"
else
  set -- --sign=false
fi
if ! "$helm" plugin package "$stage/v1/redis" "$@" -d "$out" >"$stage/helm.log" 2>&1; then
  die "helm plugin package failed: $(grep -v '^[[:space:]]*$' "$stage/helm.log" | tail -n 1)"
fi

# --- Helm 3: plugin.yaml at the root, no entry for the root itself (Helm 3's extractor fails on "./") -------
(cd "$stage/helm3/redis" && tar -cf - -- * | gzip -n >"$out/redis-$version-helm3.tgz")

for file in "$out/redis-$version.tgz" "$out/redis-$version.tgz.prov" "$out/redis-$version-helm3.tgz"; do
  if [ -f "$file" ]; then printf '%s\t%s bytes\n' "$file" "$(wc -c <"$file" | tr -d ' ')"; fi
done
