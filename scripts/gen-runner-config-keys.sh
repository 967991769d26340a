#!/usr/bin/env bash
# Regenerate operator/glrt_operator/runner_config/keys.json from gitlab-runner's own config structs.
# The module source comes from the Go module proxy (download only: building gitlab-runner is not needed).
# Usage: scripts/gen-runner-config-keys.sh [OUTPUT]   (default: the committed keys.json; "-" for stdout)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=versions.env
source "$root/scripts/versions.env"
out="${1:-$root/operator/glrt_operator/runner_config/keys.json}"
module="gitlab.com/gitlab-org/gitlab-runner@${GITLAB_RUNNER_MODULE_VERSION}"
dir="$(cd /tmp && go mod download -json "$module" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
run() { (cd "$root/scripts/runner-config-keys" && go run main.go "$dir" "$GITLAB_RUNNER_MODULE_VERSION" "$GITLAB_RUNNER_VERSION"); }
if [ "$out" = "-" ]; then run; else run > "$out.tmp" && mv "$out.tmp" "$out"; fi
