#!/usr/bin/env bash
# Installs every tool the project needs, idempotently, with the versions pinned in ci/versions.env.
# Heavy builds land in one cache directory outside the repository (keyed by version), so a second run
# takes seconds. Prints how long each stage took.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.env
source "$repo/ci/versions.env"
# shellcheck source=cache.sh
source "$repo/ci/cache.sh"
cache=$RCH_CACHE
bin="$cache/bin"
mkdir -p "$bin"

stage() { printf '[bootstrap] %-28s %s\n' "$1" "$2" >&2; }
timed() {  # timed NAME COMMAND...: run a stage and report its duration
  local name=$1 start=$SECONDS; shift
  "$@"
  stage "$name" "done in $((SECONDS - start)) s"
}

debian_packages() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v redis-cli >/dev/null || missing+=(redis-tools)
  command -v git >/dev/null || missing+=(git)
  ((${#missing[@]} == 0)) && return 0
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The Debian package may start a system-wide redis on 6379; the project never uses it.
  service redis-server stop >/dev/null 2>&1 || true
}

# go_tool NAME MODULE VERSION PACKAGE [LDFLAGS]: build a Go command once per version into the cache.
# `go install pkg@version` would ask the proxy for the module's version list, which it refuses for some
# modules (chart-testing); downloading the exact version and building inside it does not.
go_tool() {
  local name=$1 module=$2 version=$3 package=$4 ldflags=${5:-} dir="$cache/go/$1-$3" src
  [[ -x "$dir/$name" ]] && return 0
  mkdir -p "$dir"
  src=$(go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -d "$src" ]] || { echo "could not download $module@$version" >&2; return 1; }
  (cd "$src" && GOFLAGS="-buildvcs=false -mod=readonly" CGO_ENABLED=0 \
    go build -trimpath -ldflags "-s -w $ldflags" -o "$dir/$name" "$package")
}

helm_tools() {
  go_tool helm helm.sh/helm/v4 "$HELM_VERSION" ./cmd/helm \
    "-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
  ln -sf "$cache/go/helm-$HELM_VERSION/helm" "$bin/helm"
  go_tool helm3 helm.sh/helm/v3 "$HELM3_VERSION" ./cmd/helm \
    "-X helm.sh/helm/v3/internal/version.version=$HELM3_VERSION"
  ln -sf "$cache/go/helm3-$HELM3_VERSION/helm3" "$bin/helm3"
  go_tool ct github.com/helm/chart-testing/v3 "$CT_VERSION" ./ct \
    "-X github.com/helm/chart-testing/v3/ct/cmd.Version=$CT_VERSION"
  ln -sf "$cache/go/ct-$CT_VERSION/ct" "$bin/ct"
}

python_env() {
  local venv="$repo/.venv" stamp
  stamp=$(cat "$repo/pyproject.toml" "$repo/ci/versions.env" | sha256sum | cut -c1-16)
  [[ -f "$venv/.stamp" && $(cat "$venv/.stamp") == "$stamp" ]] && return 0
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -e "$repo[dev]" "yamllint==$YAMLLINT_VERSION" "yamale==$YAMALE_VERSION"
  echo "$stamp" >"$venv/.stamp"
}

total=$SECONDS
stages=("${@:-debian_packages helm_tools python_env}")
for s in ${stages[*]}; do timed "$s" "$s"; done
stage "total" "$((SECONDS - total)) s; tools in $bin"
