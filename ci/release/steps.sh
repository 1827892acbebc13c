#!/usr/bin/env bash
# The release's registry steps, one command each, shared by .github/workflows/release.yaml and
# ci/release/dry-run.sh (which runs them against a loopback registry). Each prints its result on stdout
# (a digest, or a file) and its progress on stderr; registry credentials, when needed, come from a prior
# `crane auth login` / `helm registry login`, never from arguments.
#   steps.sh push-image ARCHIVE REPO        push ci/images/build.sh's OCI layout archive to REPO by digest
#                                           (ARCHIVE.digest) and check the registry serves that digest
#   steps.sh index TAG_REF DIGEST_REF...    crane index append: one index of the per-arch images, tagged
#   steps.sh sbom IMAGE_REF OUT             syft: the SPDX-JSON SBOM of IMAGE_REF (a registry reference)
#   steps.sh push-chart CHART_DIR DIR OCI   helm lint, helm package into DIR, helm push to OCI (oci://...);
#                                           prints the pushed digest. HELM_PUSH_FLAGS: extra push flags
set -euo pipefail

die() { echo "steps.sh: $*" >&2; exit 1; }

push_image() {
  local archive=$1 repo=$2 digest layout served
  [[ -f "$archive" && -f "$archive.digest" ]] || die "push-image: $archive or $archive.digest is missing"
  digest=$(<"$archive.digest")
  layout=$(mktemp -d)
  # shellcheck disable=SC2064  # expand now: the directory of this call
  trap "rm -rf '$layout'" RETURN
  tar -xf "$archive" -C "$layout"   # crane pushes an OCI layout directory
  crane push "$layout" "$repo@$digest" >&2
  # the registry must hold the manifest digest build.sh computed (uncompressed layers, same bytes)
  served=$(crane digest "$repo@$digest")
  [[ "$served" == "$digest" ]] || die "push-image: the registry serves $served for $repo, build.sh made $digest"
  echo "$digest"
}

index() {
  local tag_ref=$1 args=() m
  shift
  (($#)) || die "index: no image to put in the index"
  for m in "$@"; do args+=(-m "$m"); done
  crane index append -t "$tag_ref" "${args[@]}" >&2
  crane manifest "$tag_ref" >&2   # in the log: every platform
  echo >&2
  crane digest "$tag_ref"
}

sbom() {
  local ref=$1 out=$2
  # no update check (no network beyond the registry); plain HTTP only for a loopback registry
  SYFT_CHECK_FOR_APP_UPDATE=false syft scan -q "registry:$ref" -o "spdx-json=$out"
  [[ -s "$out" ]] || die "sbom: syft wrote no $out"
  echo "$out"
}

push_chart() {
  local chart=$1 dir=$2 oci=$3 name version package log digest
  name=$(sed -n 's/^name: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$chart/Chart.yaml")
  version=$(sed -n 's/^version: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$chart/Chart.yaml")
  helm lint "$chart" >&2
  mkdir -p "$dir"
  helm package "$chart" -d "$dir" >&2
  package="$dir/$name-$version.tgz"
  [[ -f "$package" ]] || die "push-chart: helm package made no $package"
  # shellcheck disable=SC2086  # HELM_PUSH_FLAGS: words (e.g. --plain-http)
  log=$(helm push "$package" "$oci" ${HELM_PUSH_FLAGS:-} 2>&1) || die "push-chart: helm push: $log"
  echo "$log" >&2
  digest=$(sed -n 's/^Digest: *//p' <<<"$log")
  [[ "$digest" == sha256:* ]] || die "push-chart: helm push printed no digest"
  echo "$digest"
}

cmd=${1:-}
shift || true
case $cmd in
  push-image) (($# == 2)) || die "usage: push-image ARCHIVE REPO"; push_image "$@" ;;
  index) (($# >= 2)) || die "usage: index TAG_REF DIGEST_REF..."; index "$@" ;;
  sbom) (($# == 2)) || die "usage: sbom IMAGE_REF OUT"; sbom "$@" ;;
  push-chart) (($# == 3)) || die "usage: push-chart CHART_DIR DIR OCI_REGISTRY"; push_chart "$@" ;;
  *) die "unknown step '$cmd' (push-image, index, sbom, push-chart)" ;;
esac
