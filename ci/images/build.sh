#!/usr/bin/env bash
# Builds the cluster's images locally and hands them to the local cluster's containerd: the chart's images
# are pushed to the local registry (ci/registry) and pulled from it; the sandbox image is imported.
#   pause  - Kubernetes' pause.c (from the k8s.io/kubernetes module) compiled with gcc -static
#   redis  - Debian rootfs (debootstrap --variant=minbase) + redis-server, redis-tools
#   tools  - Debian rootfs + python3 + a venv holding the project's wheel (entrypoint helm-redis): the hook
#            Jobs, the `prepare` init container and the reconciler
# Root filesystems and layers are cached in $RCH_CACHE/images by key: the Debian base is made once, the
# tools image's venv layer is rebuilt only when src/ or pyproject.toml change. Without a running local
# containerd (CONTAINERD_ADDRESS) the images are built and cached but not imported.
set -euo pipefail
shopt -s inherit_errexit  # a failing step inside $(...) (derived, layer_of) must stop the build
LOG_TAG=images
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../k8s/lib.sh"
# shellcheck source=../engines/engines.env
source "$HERE/../engines/engines.env"

IMG="$RCH_CACHE/images"
SUITE=${IMAGES_DEBIAN_SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
# Debian's security updates go into every image (the suite's -security pocket, from the host's mirror).
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-$(awk '/^URIs:/{n++} /^URIs:/ && n==2 {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
CONTAINERD_ADDRESS=${CONTAINERD_ADDRESS:-$CONTAINERD_SOCK}
# A mirror serving a dated snapshot has Release files past their Valid-Until: when the host's apt is told to
# accept that, so is the images' apt (only while building).
APT_SNAPSHOT_OPTS=()
if apt-config dump 2>/dev/null | grep -q '^Acquire::Check-Valid-Until "false";'; then
  APT_SNAPSHOT_OPTS=(-o Acquire::Check-Valid-Until=false)
fi
mkdir -p "$IMG"/{rootfs,layers,archives,tmp}

key() { printf '%s\n' "$@" | sha256sum | cut -c1-12; }

# Mounts for a chroot, undone on exit whatever happens.
MOUNTS=()
cleanup() {
  local i
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[$i]}" 2>/dev/null || true; done
  MOUNTS=()
}
trap cleanup EXIT
chroot_mounts() {
  local root=$1
  mount -t proc proc "$root/proc" && MOUNTS+=("$root/proc")
  mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev" && MOUNTS+=("$root/dev")
}
in_chroot() { local root=$1; shift; chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  DEBIAN_FRONTEND=noninteractive LC_ALL=C HOME=/root "$@"; }

# layer_tar DIR OUT: a reproducible uncompressed layer (sorted, numeric owners, fixed mtimes).
layer_tar() {
  tar --sort=name --numeric-owner --mtime=@0 --clamp-mtime \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* --exclude=./run/* --exclude=./tmp/* \
    -C "$1" -cf "$2.tmp" . && mv "$2.tmp" "$2"
}

# --- Debian base rootfs (minbase), made once per suite/mirror ---------------------------------------
# base_dir SUITE: where the suite's base lives (made by base_rootfs SUITE).
base_dir() { echo "$IMG/rootfs/base-$(key base-v1 "$1" "$MIRROR")"; }
base_rootfs() {
  local suite=${1:-$SUITE} base script=()
  base=$(base_dir "$suite")
  [[ -f "$base/.done" ]] && return 0
  rm -rf "$base" "$base.tmp"
  # debootstrap knows the suites of its own release; newer ones (testing: forky) bootstrap like sid.
  [[ -e "/usr/share/debootstrap/scripts/$suite" ]] || script=(/usr/share/debootstrap/scripts/sid)
  debootstrap --variant=minbase "$suite" "$base.tmp" "$MIRROR" "${script[@]}" >"$IMG/tmp/debootstrap.log" 2>&1 ||
    { tail -20 "$IMG/tmp/debootstrap.log" >&2; exit 1; }
  rm -rf "$base.tmp"/var/cache/apt/archives/*.deb "$base.tmp"/var/lib/apt/lists/*
  # never start services while installing packages into image root filesystems
  printf '#!/bin/sh\nexit 101\n' >"$base.tmp/usr/sbin/policy-rc.d"
  chmod 755 "$base.tmp/usr/sbin/policy-rc.d"
  touch "$base.tmp/.done"
  mv "$base.tmp" "$base"
}

# derived NAME SUITE PACKAGES...: copy of the suite's base with Debian packages added (cached by key);
# prints its dir. Stable suites get their -security pocket too (testing has none worth pinning against).
derived() {
  local name=$1 suite=$2; shift 2
  local k dir base security=""
  base=$(base_dir "$suite")
  [[ "$suite" == bookworm || "$suite" == trixie ]] && security=$SECURITY_MIRROR
  k=$(key "$(basename "$base")" "$security" "$@")
  dir="$IMG/rootfs/$name-$k"
  if [[ ! -f "$dir/.done" ]]; then
    rm -rf "$dir" "$dir.tmp"
    cp -a "$base" "$dir.tmp"
    rm -f "$dir.tmp/.done"
    cp /etc/resolv.conf "$dir.tmp/etc/resolv.conf"
    [[ -z "$security" ]] || echo "deb $security $suite-security main" >"$dir.tmp/etc/apt/sources.list.d/security.list"
    chroot_mounts "$dir.tmp"
    in_chroot "$dir.tmp" apt-get "${APT_SNAPSHOT_OPTS[@]}" update -qq >/dev/null
    in_chroot "$dir.tmp" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    in_chroot "$dir.tmp" apt-get clean
    cleanup
    rm -rf "$dir.tmp"/var/lib/apt/lists/* "$dir.tmp"/usr/share/doc/* "$dir.tmp"/usr/share/man/* \
      "$dir.tmp"/usr/share/locale/* "$dir.tmp"/var/log/*.log "$dir.tmp"/var/cache/debconf/*-old
    : >"$dir.tmp/etc/resolv.conf"
    rm -f "$dir.tmp/usr/sbin/policy-rc.d"
    touch "$dir.tmp/.done"
    mv "$dir.tmp" "$dir"
  fi
  echo "$dir"
}

# layer_of DIR: the cached layer tarball of a (finished, immutable) rootfs; prints its path.
layer_of() {
  local out
  out="$IMG/layers/$(basename "$1").tar"
  [[ -f "$out" ]] || layer_tar "$1" "$out"
  echo "$out"
}

# image REF ARCHIVE oci.py-ARGS...: assemble the archive (if missing) and publish it (if not there yet).
image() {
  local ref=$1 archive=$2 name; shift 2
  if [[ ! -f "$archive" ]]; then
    python3 "$HERE/oci.py" "$archive.part" "$ref" --arch "$ARCH" "$@" >"$archive.digest"
    mv "$archive.part" "$archive"
  fi
  # one archive per image: drop the family's older ones (NAME-KEY.gz.tar: pause, tools, each engine)
  name=$(basename "$archive")
  find "$IMG/archives" -name "${name%-*}-*" ! -name "$name" ! -name "$name.digest" -delete
  BUILT_ARCHIVE=$archive
  [[ -n "$BUILD_ONLY" ]] || publish "$ref" "$archive"
}

# import REF ARCHIVE: for the sandbox image, which the kubelet never pulls.
import() {
  local ref=$1 archive=$2 want
  want=$(cat "$archive.digest")
  if [[ "$(containerd_digest "$ref")" != "$want" ]]; then
    ctr -a "$CONTAINERD_ADDRESS" -n k8s.io images import "$archive" >/dev/null
    log "imported $ref ($want)"
  fi
}

containerd_digest() {  # the manifest digest containerd holds under REF, if any
  ctr -a "$CONTAINERD_ADDRESS" -n k8s.io images ls "name==$1" 2>/dev/null | awk 'NR==2{print $3}'
}

# push_and_pull REF ARCHIVE: the way a cluster gets the chart's images: pushed to the local registry at
# REF's path, then pulled by containerd, which resolves REF's registry (docker.io, ghcr.io) through its
# mirror configuration to that registry (ci/registry/registry.sh). Pulled, containerd reports the image by
# its repository digest, which the e2e tests compare with the registry's.
push_and_pull() {
  local ref=$1 archive=$2 want have dir crane crictl
  want=$(cat "$archive.digest")
  crane=$(command -v crane || echo "$RCH_CACHE/bin/crane")
  [[ -x "$crane" ]] || die "crane is missing: run make bootstrap"
  local pushed="$REGISTRY_ADDR/${ref#*/}"
  have=$("$crane" digest --insecure "$pushed" 2>/dev/null || true)
  if [[ "$have" != "$want" ]]; then
    dir=$(mktemp -d "$IMG/tmp/push.XXXXXX")
    tar -xf "$archive" -C "$dir"
    "$crane" push --insecure "$dir" "$pushed" >/dev/null 2>"$IMG/tmp/push.log" ||
      { rm -rf "$dir"; tail -5 "$IMG/tmp/push.log" >&2; die "could not push $pushed"; }
    rm -rf "$dir"
    have=$("$crane" digest --insecure "$pushed")
    [[ "$have" == "$want" ]] || die "pushed $pushed, but the registry serves $have instead of $want"
    log "pushed $pushed ($want)"
  fi
  if [[ "$(containerd_digest "$ref")" != "$want" ]]; then
    crictl=$(command -v crictl || echo "$K8S_BIN/crictl")
    "$crictl" --runtime-endpoint "unix://$CONTAINERD_ADDRESS" --timeout 120s pull "$ref" >"$IMG/tmp/pull.log" 2>&1 ||
      { tail -5 "$IMG/tmp/pull.log" >&2; die "containerd could not pull $ref through the registry mirror"; }
    [[ "$(containerd_digest "$ref")" == "$want" ]] || die "containerd pulled $ref but holds $(containerd_digest "$ref"), not $want"
    log "containerd pulled $ref through the registry mirror ($want)"
  fi
}

# publish REF ARCHIVE: make the image available to the local cluster's containerd, when it runs.
publish() {
  local ref=$1 archive=$2
  [[ -S "$CONTAINERD_ADDRESS" ]] || { log "$ref built ($archive); containerd not running: not published"; return 0; }
  if [[ "$ref" == "$PAUSE_IMAGE" ]]; then import "$ref" "$archive"; else push_and_pull "$ref" "$archive"; fi
}

# --- pause -------------------------------------------------------------------------------------------
pause_image() {
  local src k dir
  src=$(cd "$IMG/tmp" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')/build/pause/linux/pause.c
  k=$(key pause-v1 "$(sha256sum <"$src")" "$(gcc --version | head -1)")
  dir="$IMG/rootfs/pause-$k"
  if [[ ! -f "$dir/.done" ]]; then
    rm -rf "$dir"
    mkdir -p "$dir"
    gcc -Os -Wall -Werror -static -DVERSION="${PAUSE_IMAGE##*:}" -o "$dir/pause" "$src"
    strip "$dir/pause"
    touch "$dir/.done"
  fi
  local layer="$IMG/layers/pause-$k.tar"
  [[ -f "$layer" ]] || tar --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$dir" -cf "$layer" ./pause
  image "$PAUSE_IMAGE" "$IMG/archives/pause-$k.gz.tar" --layer "$layer" --entrypoint '["/pause"]' \
    --user 65535:65535
}

# --- engines: one image per engine of ci/engines/engines.env -----------------------------------------
# Each is the engine's own Debian suite with its server and tools packages at the pinned version, pushed
# under the engine's image coordinates (_IMAGE). redis-7.0's are the chart's defaults, so its version must be
# the one the default image.tag names.
engine_image() {
  local engine=$1 prefix suite packages=() pkg version ref dir layer have
  prefix=$(echo "$engine" | tr 'a-z.-' 'A-Z__')
  suite=$(engine_var "$prefix" SUITES) suite=${suite%% *}
  version=$(engine_var "$prefix" DEBIAN_VERSION)
  for pkg in $(engine_var "$prefix" PACKAGES); do packages+=("$pkg=$version"); done
  ref=$(engine_var "$prefix" IMAGE)
  timed "debian base rootfs ($suite)" base_rootfs "$suite"
  dir=$(derived "$engine" "$suite" "${packages[@]}")
  local server=${engine%%-*}-server
  have=$(chroot "$dir" "$server" --version | sed -n 's/.* v=\([0-9.]*\) .*/\1/p')
  [[ "$have" == "$(engine_var "$prefix" VERSION)" ]] || die "$engine: $server --version says $have"
  if [[ "$ref" == "$REDIS_IMAGE" ]]; then
    local want
    want=$(chart_default image.tag) want=${want%%-*}
    [[ "$have" == "$want" ]] ||
      die "the chart's default image.tag names Redis $want, its CI engine ($engine) is $have: change one of them"
  fi
  layer=$(layer_of "$dir")
  image "$ref" "$IMG/archives/$(basename "$dir").gz.tar" --layer "$layer" --cmd "[\"$server\"]" \
    --label "org.opencontainers.image.source=redis-cluster-helm ci/images"
}

# engine_var PREFIX FIELD: a value of ci/engines/engines.env.
engine_var() { local v="$1_$2"; [[ -n "${!v:-}" ]] || die "ci/engines/engines.env has no $v"; echo "${!v}"; }

# --- tools: base layer (python3) + dependencies layer (venv) + project layer ------------------------
# overlay_run LOWERS UPPER COMMAND...: run COMMAND chrooted in an overlay of LOWERS (colon-separated,
# top first) with UPPER collecting what it writes; the host's CA bundle, resolver and a pip cache are
# lent to the build and taken away again, so UPPER holds only what the step added.
overlay_run() {
  local lowers=$1 upper=$2 work="$2.work" merged="$2.merged" cert
  shift 2
  rm -rf "$work" "$merged"
  mkdir -p "$upper" "$work" "$merged" "$IMG/pip-cache"
  mount -t overlay overlay -o "lowerdir=$lowers,upperdir=$upper,workdir=$work" "$merged"
  MOUNTS+=("$merged")
  chroot_mounts "$merged"
  mkdir -p "$merged/tmp/wheels" "$merged/tmp/pip-cache"
  mount --bind "$IMG/pip-cache" "$merged/tmp/pip-cache" && MOUNTS+=("$merged/tmp/pip-cache")
  cp "$WHEEL_DIR"/*.whl "$merged/tmp/wheels/"
  cp /etc/resolv.conf "$merged/etc/resolv.conf"
  cert=${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}
  cert=${cert:-/etc/ssl/certs/ca-certificates.crt}
  [[ -f "$cert" ]] && cp "$cert" "$merged/tmp/host-ca.crt"
  # shellcheck disable=SC2046  # the optional PIP_CERT assignment is one word or none
  in_chroot "$merged" env PIP_CACHE_DIR=/tmp/pip-cache PIP_DEFAULT_TIMEOUT=180 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 ${PIP_INDEX_URL:+PIP_INDEX_URL=$PIP_INDEX_URL} \
    $([[ -f "$merged/tmp/host-ca.crt" ]] && echo PIP_CERT=/tmp/host-ca.crt) "$@"
  cleanup
  rm -rf "${upper:?}/tmp" "${upper:?}/root" "${upper:?}/dev" "${upper:?}/proc" "${upper:?}/etc/resolv.conf" "$work" "$merged"
  rmdir "$upper/etc" 2>/dev/null || true
  if find "$upper" -type c | grep -c . >/dev/null; then
    die "a build step deleted files of a lower layer (overlay whiteouts): $(find "$upper" -type c | head -3)"
  fi
}

tools_image() {
  local dir base_layer src_key deps_key deps app_key app
  dir=$(derived toolsbase "$SUITE" python3 python3-venv)
  base_layer=$(layer_of "$dir")
  src_key=$(cd "$REPO_DIR" && { find src -type f \( -name '*.py' -o -name '*.typed' -o -name '*.json' -o -name '*.yaml' \) \
    -not -path '*/__pycache__/*' -not -path '*.egg-info*' -print0 | sort -z | xargs -0 sha256sum; sha256sum pyproject.toml; } |
    sha256sum | cut -c1-12)
  # dependencies: rebuilt when pyproject.toml changes; the project itself: when src/ changes
  deps_key=$(key "$(basename "$dir")" "$(sha256sum <"$REPO_DIR/pyproject.toml")" deps-v2)
  deps="$IMG/rootfs/toolsdeps-$deps_key"
  app_key=$(key "$deps_key" "$src_key")
  app="$IMG/rootfs/toolsapp-$app_key"
  if [[ ! -f "$IMG/layers/toolsapp-$app_key.tar" || ! -f "$IMG/layers/toolsdeps-$deps_key.tar" ]]; then
    WHEEL_DIR="$IMG/tmp/wheel-$src_key"
    rm -rf "$WHEEL_DIR"
    mkdir -p "$WHEEL_DIR"
    # the project's wheel, built from this checkout (its dependencies are resolved by the image's own
    # python, Debian's 3.11.2, whose markers differ from the host's)
    python3 -m pip wheel --quiet --no-deps --disable-pip-version-check -w "$WHEEL_DIR" "$REPO_DIR" >/dev/null
    if [[ ! -f "$deps/.done" ]]; then
      rm -rf "$deps"
      overlay_run "$dir" "$deps" sh -c 'python3 -m venv /opt/helm-redis &&
        /opt/helm-redis/bin/pip install --quiet /tmp/wheels/*.whl &&
        /opt/helm-redis/bin/pip uninstall --quiet -y redis-cluster-helm &&
        rm -rf /opt/helm-redis/lib/python3*/site-packages/kubernetes/aio'
      # (kubernetes/aio is the client's asyncio copy, 68 MB of 209, which nothing here imports)
      touch "$deps/.done"
    fi
    [[ -f "$IMG/layers/toolsdeps-$deps_key.tar" ]] || layer_tar "$deps" "$IMG/layers/toolsdeps-$deps_key.tar"
    if [[ ! -f "$IMG/layers/toolsapp-$app_key.tar" ]]; then
      rm -rf "$app"
      overlay_run "$deps:$dir" "$app" sh -c '/opt/helm-redis/bin/pip install --quiet --no-deps --no-index /tmp/wheels/*.whl &&
        /opt/helm-redis/bin/helm-redis --help >/dev/null &&
        /opt/helm-redis/bin/python -c "import kubernetes, pyhelm3, redis, typer, yaml"'
      layer_tar "$app" "$IMG/layers/toolsapp-$app_key.tar"
      rm -rf "$app"
    fi
    rm -rf "$WHEEL_DIR"
  fi
  image "$TOOLS_IMAGE" "$IMG/archives/tools-$app_key.gz.tar" --layer "$base_layer" \
    --layer "$IMG/layers/toolsdeps-$deps_key.tar" --layer "$IMG/layers/toolsapp-$app_key.tar" \
    --entrypoint '["/opt/helm-redis/bin/helm-redis"]' --env PATH=/opt/helm-redis/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env PYTHONUNBUFFERED=1
  # keep only the current project layer (and nothing of the image's former name, hook)
  find "$IMG/archives" -name 'hook*.tar*' -delete
  find "$IMG/layers" \( -name 'toolsapp-*.tar*' ! -name "toolsapp-$app_key.tar*" -o -name 'hook*.tar' \) -delete
  find "$IMG/layers" -name 'toolsdeps-*.tar*' ! -name "toolsdeps-$deps_key.tar*" -delete
  find "$IMG/rootfs" -maxdepth 1 -name 'toolsdeps-*' ! -name "toolsdeps-$deps_key" -exec rm -rf {} +
  find "$IMG/rootfs" -maxdepth 1 -name 'hook*' -exec rm -rf {} +
}

# ci/images/build.sh                       every image, imported into the local containerd
# ci/images/build.sh tools [--arch ARCH]   only the tools image, nothing imported: prints the path of its
#                                          OCI layout archive (the manifest digest is in ARCHIVE.digest)
# --arch (amd64, arm64; default: the host's) must be the host's: the root filesystems are built by
# running their own binaries (chroot), so each architecture is built on a native machine (release.yaml).
ARCH="" BUILD_ONLY="" BUILT_ARCHIVE=""
main() {
  local only="" host usage="usage: ci/images/build.sh [tools] [--arch amd64|arm64]"
  while (($#)); do
    case $1 in
      tools) only=tools ;;
      --arch) [[ $# -ge 2 ]] || die "--arch needs amd64 or arm64"; ARCH=$2; shift ;;
      --arch=*) ARCH=${1#--arch=} ;;
      -h | --help) echo "$usage"; return 0 ;;
      *) die "unknown argument '$1' ($usage)" ;;
    esac
    shift
  done
  host=$(dpkg --print-architecture)
  ARCH=${ARCH:-$host}
  [[ "$ARCH" == "$host" ]] ||
    die "--arch $ARCH on a $host machine: build each architecture on a native machine (no emulation)"
  [[ $(id -u) == 0 ]] || die "building root filesystems needs root (debootstrap, chroot, overlay)"
  command -v debootstrap >/dev/null || die "debootstrap is missing: run ci/k8s/build.sh (or apt-get install debootstrap)"
  if [[ "$only" == tools ]]; then
    BUILD_ONLY=1
    timed "debian base rootfs ($SUITE)" base_rootfs
    timed "tools image ($ARCH)" tools_image
    log "tools image ($ARCH): $BUILT_ARCHIVE $(cat "$BUILT_ARCHIVE.digest")"
    echo "$BUILT_ARCHIVE"
    return 0
  fi
  timed "debian base rootfs ($SUITE)" base_rootfs
  timed "pause image" pause_image
  local engine
  for engine in $ENGINES; do timed "engine image $engine" engine_image "$engine"; done
  timed "tools image" tools_image
  log "images: $PAUSE_IMAGE $TOOLS_IMAGE and one per engine of ci/engines/engines.env (cache $IMG)"
}
main "$@"
