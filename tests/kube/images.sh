#!/usr/bin/env bash
# The container images the cluster tests run, built on this machine from Debian's archive, PyPI,
# crates.io and static.rust-lang.org alone: no container registry is reachable here.
#
#   tests/kube/images.sh [--containerd-socket SOCKET] [--coredns-binary PATH] [--rebuild-bases]
#                        [--only NAME,...]
#   tests/kube/images.sh --podman ARGS...   podman on this storage: `--podman images`,
#                                            `--podman image prune -f` (drops the layer cache too)
#
# Makes sure each image exists in podman's storage under ~/.cache/zk0/podman, building what is
# missing or stale (podman and mmdebstrap are Debian packages: scripts/setup-cluster.sh):
#
#   localhost/debian:12, localhost/debian:12-slim  one Debian 12 minbase rootfs by mmdebstrap
#                                                  (its tar kept in ~/.cache/zk0/images/base)
#   localhost/python:3.11-slim-bookworm            Debian's Python and pip on it
#                                                  (images/python.Containerfile)
#   localhost/zk0/operator:V                       docker/operator.Dockerfile
#   localhost/zk0/hub-download:V                   docker/hub-download.Dockerfile
#   localhost/zk0/worker:V-cpu                     docker/zk0.Dockerfile --target worker
#   localhost/zk0/aggregator:V-cpu                 docker/zk0.Dockerfile --target aggregator
#   localhost/zk0/toolchain:V-cpu                  docker/zk0.Dockerfile --target toolchain: the
#                                                  two above's first stage, only when named in
#                                                  --only (to have it cached before they build)
#   localhost/zk0/pause:3.10                       the pod sandbox: Debian's static catatonit -P
#   localhost/zk0/coredns:C                        FROM scratch + --coredns-binary (only with it;
#                                                  C is the version the binary reports)
#
# --only limits the run to some of operator, hub-download, worker, aggregator, pause, coredns,
# toolchain (and the bases they need). V is helm/zk0/Chart.yaml's appVersion, the chart's default tag.
# An image is rebuilt only when its key changes: the Dockerfile, its ignore file, the build
# arguments, the base images' IDs and the content of the build context's files that git tracks
# or would track (kept with the image's ID in ~/.cache/zk0/images/keys). The builds reuse this
# machine's downloads and compiler cache, mounted into the build only: apt's .debs
# (~/.cache/zk0/apt-archives), pip's cache, Cargo's registry, ccache's folder, and Cargo's target
# folder for the tokenizer crate (~/.cache/zk0/tokenizers-target, started from the host build's
# build/core/tokenizer/cargo). zk0.Dockerfile and operator.Dockerfile compile at this checkout's
# own path with the host build's type and locale (LANG, LC_*), zk0.Dockerfile with its Rust too,
# so what a host build of the same tree put in those caches is reused: a ccache hit for every object.
#
# With --containerd-socket, each image is also imported into that containerd's k8s.io namespace,
# under the name a pod spec's `zk0/<name>:<tag>` means there (docker.io/zk0/<name>:<tag>), and
# localhost/zk0/pause:3.10 (containerd's sandbox_image) and localhost/zk0/coredns:C under their
# own names. An image already there with the same podman image ID (containerd label
# io.zk0.image-id) is left alone.
#
# Output: one line per step on stdout, `step=NAME result=built|cached|imported|present seconds=N`,
# then `step=images result=ok seconds=N`. Each build's log: ~/.cache/zk0/logs/images/NAME.log;
# a failure prints its tail and exits 1. ZK0_CACHE moves ~/.cache/zk0.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/tests/kube"
cache="${ZK0_CACHE:-$HOME/.cache/zk0}"

containerd_socket=""
coredns_binary=""
rebuild_bases=0
only="operator,hub-download,worker,aggregator,pause,coredns"
podman_args=()
while (($#)); do
  case "$1" in
    --containerd-socket) containerd_socket="${2:?--containerd-socket needs a path}"; shift 2 ;;
    --coredns-binary) coredns_binary="${2:?--coredns-binary needs a path}"; shift 2 ;;
    --rebuild-bases) rebuild_bases=1; shift ;;
    --only) only="${2:?--only needs a list}"; shift 2 ;;
    --podman) shift; podman_args=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "images.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
for tool in podman mmdebstrap git; do
  command -v "$tool" > /dev/null || { echo "images.sh: $tool not found: run scripts/setup-cluster.sh" >&2; exit 1; }
done
if [ -n "$coredns_binary" ] && [ ! -x "$coredns_binary" ]; then
  echo "images.sh: --coredns-binary $coredns_binary is not an executable file" >&2; exit 1
fi
if [ -n "$containerd_socket" ] && [ ! -S "$containerd_socket" ]; then
  echo "images.sh: --containerd-socket $containerd_socket is not a socket" >&2; exit 1
fi

version="$(sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"[:space:]]*\)"\{0,1\}[[:space:]]*$/\1/p' "$root/helm/zk0/Chart.yaml")"
[ -n "$version" ] || { echo "images.sh: no appVersion in helm/zk0/Chart.yaml" >&2; exit 1; }

mkdir -p "$cache/podman/storage" "$cache/images/base" "$cache/images/keys" "$cache/logs/images" \
         "$cache/tokenizers-target" "$cache/tmp"
# One run at a time: two builds into one storage would race for its layers and the apt lock.
exec 9> "$cache/images.lock"
flock 9

# podman's state lives with the cache, never in /var/lib/containers: other podman users on this
# machine are untouched, and what was built survives. runroot holds locks and mounts, which a
# reboot must clear, so it is on /run (or /tmp), one per storage; podman's database records it,
# so it is chosen once and kept in the cache.
if [ -s "$cache/podman/runroot" ]; then
  runroot="$(cat "$cache/podman/runroot")"
else
  runroot_dir=/run
  [ -w "$runroot_dir" ] || runroot_dir=/tmp
  runroot="$runroot_dir/zk0-podman-$(id -u)-$(printf '%s' "$cache" | sha256sum | cut -c1-12)"
  echo "$runroot" > "$cache/podman/runroot"
fi
export CONTAINERS_CONF="$here/images/containers.conf"
pm() {
  podman --root "$cache/podman/storage" --runroot "$runroot" --tmpdir "$runroot/libpod" \
    --storage-driver overlay "$@"
}

if ((${#podman_args[@]})); then
  pm "${podman_args[@]}"
  exit
fi

t_all=$(date +%s)
# A run that was killed can leave buildah's working containers (and their mounts) behind. Under
# the lock nothing else builds in this storage, so every container here is such a leftover.
mapfile -t leftovers < <(pm ps --all --external --format '{{.ID}}')
((${#leftovers[@]} == 0)) || pm rm --force "${leftovers[@]}" > /dev/null
wants() { [[ ",$only," == *",$1,"* ]]; }
report() { echo "step=$1 result=$2 seconds=$(($(date +%s) - $3))"; }
# Prefixes each line with the seconds since it started, so a log shows where a build's time goes.
stamp() {
  local start now line
  printf -v start '%(%s)T' -1
  while IFS= read -r line; do printf -v now '%(%s)T' -1; printf '%4d %s\n' $((now - start)) "$line"; done
}
fail() {
  echo "images.sh: $1" >&2
  if [ -n "${2:-}" ] && [ -f "$2" ]; then tail -n 40 "$2" >&2; echo "images.sh: full log: $2" >&2; fi
  exit 1
}
image_id() { pm image inspect --format '{{.Id}}' "$1"; }
# Whether IMAGE was built from KEY: its key file names KEY and the image's current ID. (Not a label
# on the image: buildah 1.28 puts --label on a Dockerfile's last stage, not on the --target.)
is_current() {
  local step="$1" image="$2" key="$3" id
  id="$(image_id "$image" 2> /dev/null)" || return 1
  [ "$(cat "$cache/images/keys/$step" 2> /dev/null)" = "$key $id" ]
}
remember() { echo "$2 $(image_id "$3")" > "$cache/images/keys/$1"; }
sha() { sha256sum | cut -c1-64; }

# The files of a build context as a hash. In the repository: those git tracks or would track
# (not ignored), under the ignore file's rules; an ignore file starting with `*` is an allow-list
# (its `!` lines), otherwise every line excludes. Elsewhere (a folder made for one build): all.
context_hash() {
  local ctx="$1" ignorefile="$2" line
  if [ "$ctx" != "$root" ]; then
    (cd "$ctx" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum) | sha; return
  fi
  local -a specs=()
  local allow=0
  if [ -n "$ignorefile" ]; then
    while IFS= read -r line; do
      line="${line%%#*}"; line="${line//[[:space:]]/}"
      [ -n "$line" ] || continue
      if [ "$line" = "*" ]; then allow=1
      elif [ "${line:0:1}" = "!" ]; then specs+=(":(glob)${line:1}" ":(glob)${line:1}/**")
      else specs+=(":(exclude,glob)$line" ":(exclude,glob)$line/**")
      fi
    done < "$ignorefile"
  fi
  if ((allow)) && ! printf '%s\n' "${specs[@]}" | grep -q '^:(glob)'; then
    echo "empty"; return
  fi
  git -C "$ctx" ls-files -z --cached --others --exclude-standard -- "${specs[@]}" \
    | sort -zu \
    | (cd "$ctx" && while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done) \
    | (cd "$ctx" && xargs -0 -r sha256sum) | sha
}

# build STEP IMAGE DOCKERFILE CONTEXT IGNOREFILE "BASE..." [podman build arguments...]
# Arguments that start with --build-arg or --target are part of the key; mounts and secrets are
# not (they only make a build faster).
build() {
  local step="$1" image="$2" dockerfile="$3" ctx="$4" ignorefile="$5" bases="$6"
  shift 6
  local t0 key base i log="$cache/logs/images/$step.log"
  t0=$(date +%s)
  local -a keyed=("$@")
  key="$({
    echo "zk0 image recipe 1"
    cat "$dockerfile"
    [ -z "$ignorefile" ] || cat "$ignorefile"
    for base in $bases; do echo "base $base $(image_id "$base")"; done
    for ((i = 0; i < ${#keyed[@]}; i++)); do
      case "${keyed[i]}" in --build-arg|--target) echo "arg ${keyed[i]} ${keyed[i + 1]}" ;; esac
    done
    context_hash "$ctx" "$ignorefile"
  } | sha)"
  if is_current "$step" "$image" "$key"; then report "$step" cached "$t0"; return; fi
  local -a ignore=()
  [ -z "$ignorefile" ] || ignore=(--ignorefile "$ignorefile")
  # host networking: builds need no network of their own, and a podman bridge would add
  # iptables rules beside the cluster's.
  if ! pm build --pull=never --format docker --network host --layers "${ignore[@]}" \
         -f "$dockerfile" -t "$image" "$@" "$ctx" 2>&1 | stamp > "$log"; then
    fail "building $image ($dockerfile) failed" "$log"
  fi
  remember "$step" "$key" "$image"
  report "$step" built "$t0"
}

# --- Debian 12 base: one minbase rootfs from Debian's archive, named as the Dockerfiles' FROM
# lines name their bases. Docs, man pages and translations are left out as Debian's slim images
# leave them out, so it serves as debian:12 and debian:12-slim alike. apt keeps no binary caches
# in layers, but keeps downloaded .debs (unlike Docker's debian images), so that the mounted
# archive cache fills.
base_step() {
  local t0 key tar
  t0=$(date +%s)
  local -a args=(
    --variant=minbase --format=tar
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias'
    --dpkgopt='path-exclude=/usr/share/lintian/*'
    --aptopt='Dir::Cache::pkgcache ""' --aptopt='Dir::Cache::srcpkgcache ""'
    --aptopt='Acquire::Languages "none"'
    bookworm
  )
  local -a mirrors=(
    "deb http://deb.debian.org/debian bookworm main"
    "deb http://deb.debian.org/debian bookworm-updates main"
    "deb http://deb.debian.org/debian-security bookworm-security main"
  )
  key="$(printf '%s\n' "zk0 base 1" "$(mmdebstrap --version)" "${args[@]}" "${mirrors[@]}" | sha)"
  tar="$cache/images/base/debian-12-${key:0:16}.tar"
  if ((rebuild_bases)) || [ ! -s "$tar" ]; then
    local log="$cache/logs/images/debian-base.log"
    rm -f "$cache"/images/base/debian-12-*.tar
    mmdebstrap "${args[@]}" "$tar.partial" "${mirrors[@]}" > "$log" 2>&1 \
      || fail "mmdebstrap of the Debian 12 base failed" "$log"
    mv "$tar.partial" "$tar"
    report debian-base-rootfs built "$t0"
  else
    report debian-base-rootfs cached "$t0"
  fi
  t0=$(date +%s)
  # A rebuilt rootfs (a new tar) means a new import, and with it new keys downstream.
  key="$(stat -c '%n %s %Y' "$tar")"
  if is_current debian-base-import localhost/debian:12 "$key" \
     && [ "$(image_id localhost/debian:12-slim 2> /dev/null)" = "$(image_id localhost/debian:12)" ]; then
    report debian-base-import cached "$t0"; return
  fi
  local out
  out="$(pm import --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$tar" localhost/debian:12 2>&1)" || fail "podman import of $tar failed: $out"
  pm tag localhost/debian:12 localhost/debian:12-slim
  remember debian-base-import "$key" localhost/debian:12
  report debian-base-import built "$t0"
}

ca_bundle=""
for f in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
  [ -s "$f" ] && { ca_bundle="$f"; break; }
done
[ -n "$ca_bundle" ] || fail "no CA bundle on this machine for HTTPS inside builds"

if wants operator || wants hub-download || wants worker || wants aggregator || wants toolchain; then
  base_step
fi

# This machine's compiler cache, and the build arguments under which a build in a container
# compiles as the host build did (its checkout path and locale): zk0.Dockerfile and
# operator.Dockerfile then find in it every object a host build of the same tree compiled.
ccache_dir="$( (command -v ccache > /dev/null && ccache -k cache_dir) 2> /dev/null || true)"
ccache_dir="${ccache_dir:-${XDG_CACHE_HOME:-$HOME/.cache}/ccache}"
mkdir -p "$ccache_dir"
as_host_build=(
  --build-arg "SRC_DIR=$root"
  --build-arg "LANG=${LANG:-}" --build-arg "LC_ALL=${LC_ALL:-}"
  --build-arg "LC_CTYPE=${LC_CTYPE:-}" --build-arg "LC_MESSAGES=${LC_MESSAGES:-}"
  -v "$ccache_dir:/var/cache/ccache"
)

# Two lanes side by side: the hub-download image and the operator, and beside them the aggregator
# and the worker, which mostly install packages once their C++ comes from ccache. Each lane keeps
# its own apt archive cache (mounted only into the builds): apt locks an archive folder for one
# process at a time.
other_lane() {
  local apt=(-v "$cache/apt-archives/other:/var/cache/apt/archives")
  if wants hub-download; then
    rm -rf "$cache/tmp/no-context" && mkdir -p "$cache/tmp/no-context"
    build python-base localhost/python:3.11-slim-bookworm "$here/images/python.Containerfile" \
      "$cache/tmp/no-context" "" "localhost/debian:12" "${apt[@]}"
    # Its pip goes to PyPI over HTTPS, through whatever proxy this machine uses: Debian's pip
    # trusts the system bundle, so the host's is mounted over it, for the build only.
    build hub-download "localhost/zk0/hub-download:$version" "$root/docker/hub-download.Dockerfile" \
      "$root" "$root/docker/hub-download.Dockerfile.dockerignore" "localhost/python:3.11-slim-bookworm" \
      -v "$ca_bundle:/etc/ssl/certs/ca-certificates.crt:ro"
  fi
  if wants operator; then
    build operator "localhost/zk0/operator:$version" "$root/docker/operator.Dockerfile" \
      "$root" "$root/docker/operator.Dockerfile.dockerignore" "localhost/debian:12 localhost/debian:12-slim" \
      "${apt[@]}" "${as_host_build[@]}"
  fi
}

zk0_lane() {
  wants worker || wants aggregator || wants toolchain || return 0
  local pip_cache cargo_home host_rust host_target target
  pip_cache="${PIP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pip}"
  cargo_home="${CARGO_HOME:-$HOME/.cargo}"
  mkdir -p "$pip_cache" "$cargo_home/registry"
  # The tokenizer crate as the host build compiled it: with the host's Rust (when recent enough),
  # Cargo's registry at the host's path and the host build's target folder as the start of the
  # one the build mounts, Cargo finds the crates fresh instead of compiling them again (minutes).
  local -a rust_args=()
  host_rust="$( (rustc --version || "$HOME/.cargo/bin/rustc" --version) 2> /dev/null | awk '{print $2}' || true)"
  if [[ "$host_rust" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] \
     && [ "$(printf '%s\n1.85.0\n' "$host_rust" | sort -V | head -n 1)" = "1.85.0" ]; then
    rust_args=(--build-arg "RUST_VERSION=$host_rust")
    host_target="$root/build/core/tokenizer/cargo"
    # (Not for the toolchain alone: the host build may be writing that folder right now.)
    if { wants worker || wants aggregator; } && [ ! -e "$cache/tokenizers-target/release" ] \
       && [ -d "$host_target/release" ]; then
      cp -a "$host_target/." "$cache/tokenizers-target/"
    fi
  fi
  local -a zk0_args=(
    "${rust_args[@]}"
    "${as_host_build[@]}"
    --build-arg "BUILD_CARGO_HOME=$cargo_home"
    --secret "id=ca-bundle,src=$ca_bundle"
    -v "$cache/apt-archives/zk0:/var/cache/apt/archives"
    -v "$pip_cache:/root/.cache/pip"
    -v "$cargo_home/registry:$cargo_home/registry"
    -v "$cache/tokenizers-target:/var/cache/zk0-tokenizers"
  )
  # The worker first: the aggregator's build then finds every layer but its last in the cache.
  for target in toolchain worker aggregator; do
    wants "$target" || continue
    build "$target" "localhost/zk0/$target:$version-cpu" "$root/docker/zk0.Dockerfile" \
      "$root" "$root/docker/zk0.Dockerfile.dockerignore" "localhost/debian:12 localhost/debian:12-slim" \
      --target "$target" "${zk0_args[@]}"
  done
}

mkdir -p "$cache/apt-archives/other/partial" "$cache/apt-archives/zk0/partial"
# The other lane in its own process group, so that a failure here stops its builds too.
set -m
other_lane > "$cache/tmp/other-lane.out" 2>&1 &
other_pid=$!
set +m
trap 'kill -TERM -- "-$other_pid" 2> /dev/null || true' EXIT
zk0_lane
if ! wait "$other_pid"; then
  cat "$cache/tmp/other-lane.out" >&2
  trap - EXIT
  exit 1
fi
trap - EXIT
cat "$cache/tmp/other-lane.out"

# Images FROM scratch around one static binary, built from a folder holding just that binary.
scratch_image() {
  local step="$1" image="$2" containerfile="$3" binary="$4" name="$5"
  local ctx="$cache/tmp/$step"
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp "$binary" "$ctx/$name"
  build "$step" "$image" "$containerfile" "$ctx" "" ""
  rm -rf "$ctx"
}
if wants pause; then
  catatonit="$(command -v catatonit || true)"
  [ -n "$catatonit" ] || fail "catatonit not found: run scripts/setup-cluster.sh"
  scratch_image pause localhost/zk0/pause:3.10 "$here/images/pause.Containerfile" "$catatonit" catatonit
fi
coredns_image=""
if wants coredns && [ -n "$coredns_binary" ]; then
  coredns_version="$("$coredns_binary" -version | sed -n 's/^CoreDNS-\([0-9.]*\).*/\1/p' | head -n 1)"
  [ -n "$coredns_version" ] || fail "$coredns_binary -version names no CoreDNS version"
  coredns_image="localhost/zk0/coredns:$coredns_version"
  scratch_image coredns "$coredns_image" "$here/images/coredns.Containerfile" "$coredns_binary" coredns
fi

# --- Into containerd. `ctr images import` takes the name recorded in the archive; the image is
# then tagged with the name pods use. (--base-name would be the way to rename on import, but
# with it ctr 1.6 silently dropped the image.)
if [ -n "$containerd_socket" ]; then
  command -v ctr > /dev/null || fail "ctr not found: run scripts/setup-cluster.sh"
  ctr_() { ctr --address "$containerd_socket" --namespace k8s.io "$@"; }
  ctr_import() {
    local step="$1" image="$2" name="$3" t0 id archive out imported
    t0=$(date +%s)
    id="$(image_id "$image")"
    if ctr_ images ls "name==\"$name\"" 2> /dev/null | grep -q "io.zk0.image-id=$id"; then
      report "$step" present "$t0"; return
    fi
    archive="$cache/tmp/$step.oci.tar"
    rm -f "$archive"
    pm save --format oci-archive -o "$archive" "$image" > /dev/null 2>&1 || fail "podman save of $image failed"
    out="$(ctr_ images import "$archive" 2>&1)" || fail "ctr images import of $image failed: $out"
    rm -f "$archive"
    imported="$(sed -n 's/^unpacking \(.*\) (sha256:.*/\1/p' <<< "$out" | head -n 1)"
    [ -n "$imported" ] || fail "ctr images import of $image named no image: $out"
    if [ "$imported" != "$name" ]; then
      ctr_ images tag --force "$imported" "$name" > /dev/null || fail "ctr images tag $imported $name failed"
    fi
    ctr_ images label "$name" "io.zk0.image-id=$id" > /dev/null || fail "ctr images label $name failed"
    report "$step" imported "$t0"
  }
  for name in operator hub-download; do
    wants "$name" || continue
    ctr_import "import-$name" "localhost/zk0/$name:$version" "docker.io/zk0/$name:$version"
  done
  for name in worker aggregator; do
    wants "$name" || continue
    ctr_import "import-$name" "localhost/zk0/$name:$version-cpu" "docker.io/zk0/$name:$version-cpu"
  done
  ! wants pause || ctr_import import-pause localhost/zk0/pause:3.10 localhost/zk0/pause:3.10
  [ -z "$coredns_image" ] || ctr_import import-coredns "$coredns_image" "$coredns_image"
fi
report images ok "$t_all"
