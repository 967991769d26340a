#!/usr/bin/env bash
# Builds, without any registry, the images the test cluster's node runs, each cached as an OCI archive under
# $GLRT_CACHE/images keyed by a hash of its inputs (a warm run rebuilds nothing):
#   pause     the pod sandbox, compiled from build/pause/linux/pause.c of the pinned k8s.io/kubernetes module
#   base      a Debian bookworm made by debootstrap, standing in for python:3.11-slim (loaded under that name)
#   operator  the repository's own Dockerfile, built unchanged with buildah
#   operator-previous  the same from the release the upgrade e2e starts from (UPGRADE_FROM_COMMIT, from git history)
#   runner    busybox-static as /bin/sh plus the runner stand-in (tests/runner_standin) as /usr/bin/gitlab-runner
#   job       a CI job image for the kubernetes executor's build container: busybox-static as /bin/sh and its
#             coreutils applets
#   helper    the kubernetes executor's helper image: busybox-static's applets plus bash-static as /bin/bash
#             (gitlab-runner sends the helper commands that use bash's `<<<`)
#
#   scripts/build-images.sh [pause|base|operator|operator-previous|runner|job|helper ...]
#   (default: all but operator-previous, which only the upgrade e2e asks for)
#
# Prints one line per image on stdout: "<image name> <archive path>"; progress goes to stderr. Needs root
# (debootstrap, buildah's chroot isolation) and the packages scripts/setup-node.sh installs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${GLRT_CACHE:-$HOME/.cache/glrt-operator}
images="$cache/images"
mkdir -p "$images"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
storage=(--root "$images/storage" --runroot "$images/run" --storage-driver vfs)
bah() { buildah "${storage[@]}" "$@"; }

log() { echo "build-images: $*" >&2; }
hash_of() { sha256sum | cut -c1-16; }

# One build at a time across processes; a second caller waits, then finds the archive cached.
exec {lock}>"$images/.lock"
flock "$lock"

# cached NAME KEY FUNCTION IMAGE: runs FUNCTION (which must write $archive) unless the archive exists.
cached() {
  local name=$1 key=$2 fn=$3 image=$4
  archive="$images/$name-$key.oci.tar"
  if [[ ! -f "$archive" ]]; then
    log "$name: building $image (once; later runs reuse $archive)"
    local started=$SECONDS
    rm -f "$archive.tmp"
    "$fn" "$image" "$archive.tmp"
    mv "$archive.tmp" "$archive"
    log "$name: done in $((SECONDS - started))s"
  else
    log "$name: cached in $archive"
  fi
  echo "$image $archive"
}

# commit CONTAINER IMAGE ARCHIVE: commit a working container, write it as an OCI archive, drop the container.
commit() {
  bah commit --quiet --rm "$1" "$2" >/dev/null
  bah push --quiet "$2" "oci-archive:$3:$2"
}

PAUSE_IMAGE=registry.k8s.io/pause:3.10
pause_src() {
  local dir
  dir=$(cd "$cache/src/kubernetes-$KUBERNETES_VERSION" 2>/dev/null && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
    sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [[ -n "$dir" ]] || dir=$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
    sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  echo "$dir/build/pause/linux/pause.c"
}
build_pause() {
  local tmp ctr
  tmp=$(mktemp -d)
  gcc -Os -Wall -Werror -static -DVERSION="v3.10-glrt" -o "$tmp/pause" "$(pause_src)"
  strip "$tmp/pause"
  ctr=$(bah from --quiet scratch)
  bah copy --quiet "$ctr" "$tmp/pause" /pause >/dev/null
  bah config --entrypoint '["/pause"]' --user 65535:65535 "$ctr"
  commit "$ctr" "$1" "$2"
  rm -rf "$tmp"
}

BASE_IMAGE=docker.io/library/python:3.11-slim
BASE_PACKAGES=python3,python3-venv,ca-certificates
MIRROR=http://deb.debian.org/debian
build_base() {
  local root ctr
  root=$(mktemp -d)
  debootstrap --variant=minbase --include="$BASE_PACKAGES" bookworm "$root" "$MIRROR" >&2
  cat >"$root/etc/apt/sources.list" <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
  chroot "$root" sh -ec 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -qq
    python3 -m venv /usr/local && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*' >&2
  # python:3.11-slim has python and pip under /usr/local/bin; the venv puts them there too.
  rm -f "$root"/var/log/*.log "$root"/var/cache/ldconfig/aux-cache
  ctr=$(bah from --quiet scratch)
  tar -C "$root" --sort=name --mtime=@0 --numeric-owner -cf "$root.tar" .
  bah add --quiet "$ctr" "$root.tar" / >/dev/null
  bah config --env PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --cmd '["python3"]' "$ctr"
  commit "$ctr" "$1" "$2"
  rm -rf "$root" "$root.tar"
}

OPERATOR_IMAGE=localhost/glrt-operator:test
# build_operator IMAGE ARCHIVE BASE_ARCHIVE [CONTEXT]: the Dockerfile of CONTEXT (default: this checkout).
build_operator() {
  local base_archive=$3 context=${4:-$repo} mounts=()
  # The base must be in buildah's storage under the FROM line's name; --pull=never keeps registries out.
  bah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1 || bah pull --quiet "oci-archive:$base_archive" >/dev/null
  bah tag "$(bah images --quiet --filter reference="$BASE_IMAGE" | head -1)" "$BASE_IMAGE" 2>/dev/null || true
  # pip inside RUN must trust this machine's TLS-inspecting proxy: the CA bundle and pip.conf are bind-mounted
  # (bind mounts are not saved into the image).
  [[ -f /etc/ssl/certs/ca-certificates.crt ]] &&
    mounts+=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
  [[ -f /etc/pip.conf ]] && mounts+=(-v /etc/pip.conf:/etc/pip.conf:ro)
  bah bud --quiet --isolation chroot --network host --pull=never --layers=false "${mounts[@]}" \
    -f "$context/Dockerfile" -t "$1" "$context" >&2
  bah push --quiet "$1" "oci-archive:$2:$1"
}

PREVIOUS_OPERATOR_IMAGE=localhost/glrt-operator:previous
build_previous_operator() {
  local tree
  tree=$(mktemp -d)
  git -C "$repo" cat-file -e "$UPGRADE_FROM_COMMIT^{commit}" 2>/dev/null || {
    echo "build-images: commit $UPGRADE_FROM_COMMIT (UPGRADE_FROM_COMMIT) is not in this clone's history" \
      "(a shallow clone? git fetch --unshallow)" >&2
    return 1
  }
  git -C "$repo" archive "$UPGRADE_FROM_COMMIT" | tar -x -C "$tree"
  build_operator "$1" "$2" "$3" "$tree"
  rm -rf "$tree"
}

RUNNER_IMAGE=localhost/glrt-runner-standin:test
build_runner() {
  local tmp ctr
  tmp=$(mktemp -d)
  (cd "$repo/tests/runner_standin" && CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$tmp/gitlab-runner" .)
  ctr=$(bah from --quiet scratch)
  bah copy --quiet "$ctr" /bin/busybox /bin/busybox >/dev/null
  bah copy --quiet "$ctr" "$tmp/gitlab-runner" /usr/bin/gitlab-runner >/dev/null
  bah run --isolation chroot "$ctr" -- /bin/busybox --install -s /bin >&2
  # An /etc/passwd so uid 100 has a name; /tmp for tools that want one (the pod mounts its own).
  bah run --isolation chroot "$ctr" -- /bin/sh -c 'mkdir -p /etc /tmp && chmod 1777 /tmp &&
    printf "root:x:0:0:root:/root:/bin/sh\ngitlab-runner:x:100:65533::/home/gitlab-runner:/bin/sh\n" >/etc/passwd &&
    printf "root:x:0:\nnogroup:x:65533:\n" >/etc/group' >&2
  bah config --entrypoint '["/usr/bin/gitlab-runner"]' --cmd '["run"]' --user 100:65533 "$ctr"
  commit "$ctr" "$1" "$2"
  rm -rf "$tmp"
}

# busybox_image CONTAINER: busybox-static with its applets in /bin, /tmp, and an /etc/passwd with root and uid 1000.
busybox_image() {
  bah copy --quiet "$1" /bin/busybox /bin/busybox >/dev/null
  bah run --isolation chroot "$1" -- /bin/busybox --install -s /bin >&2
  bah run --isolation chroot "$1" -- /bin/sh -c 'mkdir -p /etc /tmp /root && chmod 1777 /tmp &&
    printf "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/tmp:/bin/sh\n" >/etc/passwd &&
    printf "root:x:0:\nuser:x:1000:\n" >/etc/group' >&2
}

JOB_IMAGE=localhost/glrt-job:test
build_job() {
  local ctr
  ctr=$(bah from --quiet scratch)
  busybox_image "$ctr"
  bah config --cmd '["/bin/sh"]' --env PATH=/usr/local/bin:/usr/bin:/bin "$ctr"
  commit "$ctr" "$1" "$2"
}

HELPER_IMAGE=localhost/glrt-runner-helper:test
build_helper() {
  local ctr
  ctr=$(bah from --quiet scratch)
  busybox_image "$ctr"
  bah copy --quiet "$ctr" /bin/bash-static /bin/bash >/dev/null
  bah config --cmd '["/bin/sh"]' --env PATH=/usr/local/bin:/usr/bin:/bin "$ctr"
  commit "$ctr" "$1" "$2"
}

wanted=("$@")
[[ ${#wanted[@]} -gt 0 ]] || wanted=(pause base operator runner job helper)
for w in "${wanted[@]}"; do
  case $w in
  pause)
    key=$( (cat "$(pause_src)"; gcc --version | head -1; echo "$PAUSE_IMAGE") | hash_of)
    cached pause "$key" build_pause "$PAUSE_IMAGE" ;;
  base)
    base_key=$(echo "bookworm $BASE_PACKAGES $BASE_IMAGE $(sed -n '/^build_base/,/^}/p' "$0")" | hash_of)
    cached base "$base_key" build_base "$BASE_IMAGE" ;;
  operator)
    base_key=$(echo "bookworm $BASE_PACKAGES $BASE_IMAGE $(sed -n '/^build_base/,/^}/p' "$0")" | hash_of)
    base_archive=$(cached base "$base_key" build_base "$BASE_IMAGE" | cut -d' ' -f2)
    # The build context is what .dockerignore lets through: pyproject.toml, README.md and operator/.
    key=$( (echo "$base_archive $OPERATOR_IMAGE"; cd "$repo" &&
      git ls-files -co --exclude-standard Dockerfile .dockerignore pyproject.toml README.md operator |
        grep -v __pycache__ | sort | xargs sha256sum) | hash_of)
    build_operator_with_base() { build_operator "$1" "$2" "$base_archive"; }
    cached operator "$key" build_operator_with_base "$OPERATOR_IMAGE" ;;
  operator-previous)
    base_key=$(echo "bookworm $BASE_PACKAGES $BASE_IMAGE $(sed -n '/^build_base/,/^}/p' "$0")" | hash_of)
    base_archive=$(cached base "$base_key" build_base "$BASE_IMAGE" | cut -d' ' -f2)
    key=$(echo "$base_archive $PREVIOUS_OPERATOR_IMAGE $UPGRADE_FROM_COMMIT" | hash_of)
    build_previous_with_base() { build_previous_operator "$1" "$2" "$base_archive"; }
    cached operator-previous "$key" build_previous_with_base "$PREVIOUS_OPERATOR_IMAGE" ;;
  runner)
    key=$( (cd "$repo/tests/runner_standin" && sha256sum go.mod go.sum ./*.go; sha256sum /bin/busybox;
      go version; echo "$RUNNER_IMAGE") | hash_of)
    cached runner "$key" build_runner "$RUNNER_IMAGE" ;;
  job)
    key=$( (sha256sum /bin/busybox; sed -n '/^busybox_image/,/^}/p;/^build_job/,/^}/p' "$0"; echo "$JOB_IMAGE") | hash_of)
    cached job "$key" build_job "$JOB_IMAGE" ;;
  helper)
    key=$( (sha256sum /bin/busybox /bin/bash-static; sed -n '/^busybox_image/,/^}/p;/^build_helper/,/^}/p' "$0"
      echo "$HELPER_IMAGE") | hash_of)
    cached helper "$key" build_helper "$HELPER_IMAGE" ;;
  *) echo "build-images: unknown image $w" >&2; exit 2 ;;
  esac
done
