#!/usr/bin/env bash
# The release workflow (.github/workflows/release.yaml) run here, against a loopback registry:
#   ci/release/dry-run.sh [REGISTRY] [--prefix PATH] [--out DIR]
# REGISTRY (host:port, loopback, plain HTTP) defaults to $RCH_REGISTRY, else the running local cluster's
# registry. Everything lands under REGISTRY/PATH (default release-dry-run/redis-cluster-helm, so the chart's
# default coordinates, which the e2e journey uses, are never overwritten): PATH/tools (image by digest + index tagged with the chart's
# appVersion) and PATH/charts/redis-cluster. Steps: the tools image by ci/images/build.sh tools (root;
# cached), pushed by digest, `crane index append` (one architecture here, two in the workflow), SPDX-JSON
# SBOM by syft, cosign signatures (index, recursively) and SBOM attestation with a key pair made for this
# run (keyless signing needs GitHub's OIDC token), the chart packaged, pushed and signed, then every
# signature and the attestation verified with the public key. OUT (default: a new temporary directory)
# receives the SBOM, the chart package, cosign.pub, release.json (refs, digests, sizes, step times) and
# one log per step. The private key and its password live in a private directory removed on exit;
# COSIGN_PASSWORD_FILE may name the password file, else a random one is made. Any failure: exit 1 and one
# line naming the step.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source-path=SCRIPTDIR/.. source=cache.sh
source "$repo/ci/cache.sh"
export RCH_CACHE PATH="$RCH_CACHE/bin:$PATH"
steps="$repo/ci/release/steps.sh"

registry="" prefix=release-dry-run/redis-cluster-helm out=""
usage="usage: ci/release/dry-run.sh [REGISTRY] [--prefix PATH] [--out DIR]"
while (($#)); do
  case $1 in
    --prefix) [[ $# -ge 2 ]] || { echo "$usage" >&2; exit 2; }; prefix=$2; shift ;;
    --prefix=*) prefix=${1#--prefix=} ;;
    --out) [[ $# -ge 2 ]] || { echo "$usage" >&2; exit 2; }; out=$2; shift ;;
    --out=*) out=${1#--out=} ;;
    -h | --help) echo "$usage"; exit 0 ;;
    -*) echo "release-dry-run: unknown option $1 ($usage)" >&2; exit 2 ;;
    *) registry=$1 ;;
  esac
  shift
done
fail() { echo "release-dry-run: $*" >&2; exit 1; }
registry=${registry:-${RCH_REGISTRY:-}}
# else the local cluster's registry, when the local cluster runs (what ci/select-cluster.sh would export)
[[ -n "$registry" ]] || registry=$("$repo/ci/k8s/env.sh" 2>/dev/null | sed -n 's/.*RCH_REGISTRY=\([^ ]*\).*/\1/p' || true)
[[ -n "$registry" ]] || fail "no registry: pass HOST:PORT or set RCH_REGISTRY (the local cluster exports it)"
# plain HTTP and test-only cosign flags: loopback registries only
[[ "$registry" =~ ^(127\.[0-9.]+|localhost|\[::1\]):[0-9]+$ ]] ||
  fail "$registry is not a loopback host:port (the dry run talks plain HTTP and is for local registries)"
[[ "$prefix" =~ ^[a-z0-9]+([._/-][a-z0-9]+)*$ ]] || fail "--prefix $prefix is not a repository path"
for tool in crane syft cosign helm python3; do
  command -v "$tool" >/dev/null || fail "$tool not found: run ci/bootstrap.sh (stage release_tools)"
done
((EUID == 0)) || command -v sudo >/dev/null || fail "ci/images/build.sh needs root (debootstrap, chroot)"
[[ -n "$out" ]] || out=$(mktemp -d "${TMPDIR:-/tmp}/release-dry-run.XXXXXX")
mkdir -p "$out/logs"
out=$(cd "$out" && pwd)

chart_dir="$repo/charts/redis-cluster"
field() { sed -n "s/^$1: *\"\{0,1\}\([^\"]*\)\"\{0,1\} *$/\1/p" "$chart_dir/Chart.yaml"; }
version=$(field version) app_version=$(field appVersion)
tools_repo="$registry/$prefix/tools"
chart_oci="oci://$registry/$prefix/charts"
chart_repo="$registry/$prefix/charts/redis-cluster"
arch=$(dpkg --print-architecture 2>/dev/null || go env GOARCH)

# The run's signing key: a private directory, removed whatever happens; the password is only ever in a
# file (mode 600) and in cosign's environment.
secret=$(mktemp -d "${TMPDIR:-/tmp}/release-dry-run-key.XXXXXX")
chmod 700 "$secret"
current="" started=0 timings=()
finish() {
  local rc=$? line=""
  exec 1>&3 2>&4 || true
  rm -rf "$secret"
  if ((rc != 0)) && [[ -n "$current" ]]; then
    line=$(grep -v '^[[:space:]]*$' "$out/logs/$current.log" 2>/dev/null | tail -n1 || true)
    echo "release-dry-run: step '$current' failed (exit $rc): ${line:-no output} (log: $out/logs/$current.log)" >&2
  fi
  exit "$rc"
}
exec 3>&1 4>&2
trap finish EXIT
# begin NAME: the step's output goes to its log; end NAME: back to the terminal, with the step's time.
begin() { current=$1 started=$(date +%s.%N); exec >"$out/logs/$1.log" 2>&1; }
end() {
  local took
  exec 1>&3 2>&4
  took=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$started" "$(date +%s.%N)")
  timings+=("$current=$took")
  printf '[release-dry-run] %-22s %6s s  %s\n' "$current" "$took" "${1:-}"
  current=""
}
# cosign against this registry: a key of this run, no transparency log, no TUF, plain HTTP (the flags of
# cosign v3 cmd/cosign/cli/options: registry.go, sign.go, verify.go)
registry_flags=(--allow-http-registry --allow-insecure-registry)
sign_flags=(--yes --key "$secret/cosign.key" --tlog-upload=false --use-signing-config=false "${registry_flags[@]}")
verify_flags=(--key "$out/cosign.pub" --insecure-ignore-tlog "${registry_flags[@]}")

begin keys
if [[ -n "${COSIGN_PASSWORD_FILE:-}" ]]; then
  [[ -r "$COSIGN_PASSWORD_FILE" ]] || fail "COSIGN_PASSWORD_FILE is not readable"
  install -m 600 "$COSIGN_PASSWORD_FILE" "$secret/password"
else
  (umask 077 && openssl rand -hex 32 >"$secret/password")
fi
COSIGN_PASSWORD=$(<"$secret/password")
export COSIGN_PASSWORD
(cd "$secret" && cosign generate-key-pair --output-key-prefix cosign)
cp "$secret/cosign.pub" "$out/cosign.pub"
end "cosign key pair (this run only): $out/cosign.pub"

begin build
if ((EUID == 0)); then
  archive=$("$repo/ci/images/build.sh" tools --arch "$arch")
else
  archive=$(sudo env "PATH=$PATH" "RCH_CACHE=$RCH_CACHE" "$repo/ci/images/build.sh" tools --arch "$arch")
fi
archive_bytes=$(stat -c %s "$archive")
end "ci/images/build.sh tools ($arch): $(<"$archive.digest"), archive $archive_bytes bytes"

begin push-image
image_digest=$("$steps" push-image "$archive" "$tools_repo")
image_bytes=$(crane manifest "$tools_repo@$image_digest" |
  python3 -c 'import json, sys; m = json.load(sys.stdin); print(m["config"]["size"] + sum(l["size"] for l in m["layers"]))')
end "$tools_repo@$image_digest ($image_bytes bytes)"

begin index
index_digest=$("$steps" index "$tools_repo:$app_version" "$tools_repo@$image_digest")
end "$tools_repo:$app_version = $index_digest ($arch)"

begin sbom
sbom="$out/tools-$arch.spdx.json"
SYFT_REGISTRY_INSECURE_USE_HTTP=true "$steps" sbom "$tools_repo@$image_digest" "$sbom" >/dev/null
packages=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["packages"]))' "$sbom")
end "$sbom ($(stat -c %s "$sbom") bytes, $packages packages)"

begin sign-index
cosign sign "${sign_flags[@]}" --recursive "$tools_repo@$index_digest"
end "index and its image signed"

begin attest-sbom
cosign attest "${sign_flags[@]}" --type spdxjson --predicate "$sbom" "$tools_repo@$image_digest"
end "SBOM attested on $tools_repo@$image_digest"

begin push-chart
chart_digest=$(HELM_PUSH_FLAGS=--plain-http "$steps" push-chart "$chart_dir" "$out" "$chart_oci")
chart_package="$out/redis-cluster-$version.tgz"
chart_bytes=$(stat -c %s "$chart_package")
end "$chart_repo:$version = $chart_digest (package $chart_bytes bytes)"

begin sign-chart
cosign sign "${sign_flags[@]}" "$chart_repo@$chart_digest"
end "chart signed"

begin verify
# by tag: the tags a user pulls resolve to signed digests
cosign verify "${verify_flags[@]}" "$tools_repo:$app_version" >"$out/verify-index.json"
cosign verify "${verify_flags[@]}" "$tools_repo@$image_digest" >"$out/verify-image.json"
cosign verify "${verify_flags[@]}" "$chart_repo:$version" >"$out/verify-chart.json"
cosign verify-attestation "${verify_flags[@]}" --type spdxjson "$tools_repo@$image_digest" \
  >"$out/verify-attestation.json"
# the attested predicate is the SBOM written above
python3 - "$out/verify-attestation.json" "$sbom" <<'EOF'
import base64, json, sys
envelope = json.loads(open(sys.argv[1]).readline())
statement = json.loads(base64.b64decode(envelope["payload"]))
if statement["predicate"] != json.load(open(sys.argv[2])):
    sys.exit("the attested SBOM differs from the one syft wrote")
EOF
end "index (by tag), image, chart (by tag) and SBOM attestation verified with cosign.pub"

begin summary
total=$(python3 - "$out/release.json" "${timings[@]}" <<EOF
import json, sys
timings = {k: float(v) for k, v in (t.split("=", 1) for t in sys.argv[2:])}
json.dump({
    "registry": "$registry", "prefix": "$prefix", "arch": "$arch",
    "tools_repo": "$tools_repo", "app_version": "$app_version", "image_digest": "$image_digest",
    "image_bytes": $image_bytes, "index_digest": "$index_digest",
    "chart_repo": "$chart_repo", "chart_version": "$version", "chart_digest": "$chart_digest",
    "chart_bytes": $chart_bytes, "sbom": "$sbom", "public_key": "$out/cosign.pub", "timings": timings,
}, open(sys.argv[1], "w"), indent=2)
print(f"{sum(timings.values()):.1f}")
EOF
)
end "$out/release.json"
echo "[release-dry-run] done: $total s in the steps above"
