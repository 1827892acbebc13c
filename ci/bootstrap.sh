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

# python3's version and whether `python3 -m venv` can work (ensurepip, shipped apart by Debian as
# python3-venv), e.g. "3.11 1": one interpreter start, remembered until packages are installed.
# A current .venv (python_env's stamp) answers without starting python3: its pyvenv.cfg has the version.
py_facts=""
python_facts() {
  [[ -n "$py_facts" ]] && return 0
  if venv_current; then
    py_facts="$(sed -n 's/^version_info = \([0-9]*\.[0-9]*\).*/\1/p; s/^version = \([0-9]*\.[0-9]*\).*/\1/p' \
      "$repo/.venv/pyvenv.cfg" | head -n1) 1"
    [[ "$py_facts" != " 1" ]] && return 0
  fi
  py_facts=$(python3 -c 'import sys, importlib.util as u
print("%d.%d" % sys.version_info[:2], int(all(u.find_spec(m) for m in ("ensurepip", "venv"))))' 2>/dev/null ||
    echo "none 0")
}

debian_packages() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v redis-cli >/dev/null || missing+=(redis-tools)
  command -v git >/dev/null || missing+=(git)
  command -v openssl >/dev/null || missing+=(openssl)
  python_facts
  [[ "${py_facts#* }" == 1 ]] || missing+=(python3-venv)
  ((${#missing[@]} == 0)) && return 0
  py_facts=""
  command -v apt-get >/dev/null && ((EUID == 0)) || return 0  # prerequisites then names what is missing
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The Debian package may start a system-wide redis on 6379; the project never uses it.
  service redis-server stop >/dev/null 2>&1 || true
}

# at_least FOUND WANTED: version FOUND >= WANTED (dotted numbers).
at_least() { [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]; }

# Everything the project relies on and bootstrap cannot build itself, checked in a few milliseconds; what
# is missing or too old is said in one line, and bootstrap stops there.
prerequisites() {
  local missing=() v
  v=$(go env GOVERSION 2>/dev/null || true)
  [[ -n "$v" ]] && at_least "${v#go}" "$GO_MIN_VERSION" || missing+=("go >= $GO_MIN_VERSION (${v:-not found})")
  python_facts
  v=${py_facts% *}
  [[ "$v" != none ]] && at_least "$v" 3.11 || missing+=("python3 >= 3.11 (${v/none/not found})")
  [[ "${py_facts#* }" == 1 ]] || missing+=("python3-venv (python3 -m venv needs ensurepip)")
  v=$(redis-server --version 2>/dev/null | sed -n 's/.* v=\([0-9.]*\).*/\1/p' || true)
  [[ -n "$v" ]] && at_least "$v" 7.0 || missing+=("redis-server >= 7.0 (${v:-not found})")
  command -v redis-cli >/dev/null || missing+=("redis-cli (redis-tools)")
  command -v git >/dev/null || missing+=(git)
  command -v openssl >/dev/null || missing+=(openssl)
  ((${#missing[@]} == 0)) && return 0
  local IFS=,
  echo "[bootstrap] missing: ${missing[*]}" | sed 's/,/, /g' >&2
  return 1
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

# The loopback OCI registry of the tests and the tool that pushes images to it (ci/registry).
registry_tools() {
  go_tool registry github.com/distribution/distribution/v3 "$REGISTRY_VERSION" ./cmd/registry \
    "-X github.com/distribution/distribution/v3/version.version=$REGISTRY_VERSION"
  ln -sf "$cache/go/registry-$REGISTRY_VERSION/registry" "$bin/registry"
  go_tool crane github.com/google/go-containerregistry "$CRANE_VERSION" ./cmd/crane
  ln -sf "$cache/go/crane-$CRANE_VERSION/crane" "$bin/crane"
}

# The release's supply-chain tools (ci/release/dry-run.sh): syft writes the SPDX SBOM of the tools image,
# cosign signs and attests with a throwaway key pair and verifies (the workflow's steps, run locally).
release_tools() {
  go_tool syft github.com/anchore/syft "$SYFT_VERSION" ./cmd/syft \
    "-X main.version=$SYFT_VERSION"
  ln -sf "$cache/go/syft-$SYFT_VERSION/syft" "$bin/syft"
  go_tool cosign github.com/sigstore/cosign/v3 "$COSIGN_VERSION" ./cmd/cosign \
    "-X sigs.k8s.io/release-utils/version.gitVersion=$COSIGN_VERSION"
  ln -sf "$cache/go/cosign-$COSIGN_VERSION/cosign" "$bin/cosign"
}

# The four server engines of the local-process suites, from their Debian suites into the cache (issue 13).
engines() { "$repo/ci/engines/fetch.sh"; }

venv_stamp() { cat "$repo/pyproject.toml" "$repo/ci/versions.env" | sha256sum | cut -c1-16; }
venv_current() { [[ -f "$repo/.venv/.stamp" && $(cat "$repo/.venv/.stamp") == "$(venv_stamp)" ]]; }

python_env() {
  local venv="$repo/.venv" stamp
  stamp=$(venv_stamp)
  venv_current && return 0
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -e "$repo[dev]" "yamllint==$YAMLLINT_VERSION" "yamale==$YAMALE_VERSION"
  echo "$stamp" >"$venv/.stamp"
}

total=$SECONDS
stages=("${@:-debian_packages prerequisites helm_tools registry_tools release_tools engines python_env}")
for s in ${stages[*]}; do timed "$s" "$s"; done
stage "total" "$((SECONDS - total)) s; tools in $bin"
