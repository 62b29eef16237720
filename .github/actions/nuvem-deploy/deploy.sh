#!/usr/bin/env bash
# nuvem-deploy: package the stack (or take a bundle built earlier), upload it to the gateway,
# wait until every function is ready, and roll back what changed when one is not.
#   NUVEM_URL, NUVEM_ADMIN_PASSWORD  the gateway and its admin password (nuvem-auth sets both)
#   NUVEM_STACK_FILE                 the stack file (default: nuvem.yaml)
#   NUVEM_BUNDLE                     a bundle from `nuvem package`; nothing is packaged then
#   NUVEM_VERSION                    the bundle's version (default: the git tag at HEAD)
#   NUVEM_TIMEOUT                    seconds to wait for ready (default: 600)
#   NUVEM_ROLLBACK                   true: roll back on failure (default), false: leave it
#   NUVEM_REPLACE                    true: take over functions another stack deployed
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/github.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/github.sh" nuvem-deploy

require NUVEM_URL gateway-url
require NUVEM_ADMIN_PASSWORD admin-password
mask "$NUVEM_ADMIN_PASSWORD"
export NUVEM_ADMIN_PASSWORD

bundle="${NUVEM_BUNDLE:-}"
if [ -z "$bundle" ]; then
  stack="${NUVEM_STACK_FILE:-nuvem.yaml}"
  [ -f "$stack" ] || fail "no stack file $stack: set the input 'stack-file'" 2
  package=(package -f "$stack")
  if [ -n "${NUVEM_VERSION:-}" ]; then
    package+=(--version "$NUVEM_VERSION")
  fi
  bundle=$(nuvem "${package[@]}") || fail "packaging $stack failed: see the error above" "$?"
fi
[ -f "$bundle" ] || fail "no bundle $bundle: set the input 'bundle' to a file nuvem package wrote" 2

digest=$(sha256sum "$bundle" | cut -d' ' -f1)
version=$(python3 -c 'import json, sys, zipfile
print(json.loads(zipfile.ZipFile(sys.argv[1]).read("manifest.json"))["version"])' "$bundle")
set_output bundle "$bundle"
set_output digest "$digest"
set_output version "$version"

deploy=(--url "$NUVEM_URL" deploy --bundle "$bundle" --timeout "${NUVEM_TIMEOUT:-600}")
case "${NUVEM_ROLLBACK:-true}" in
  true) deploy+=(--rollback-on-failure) ;;
  false) ;;
  *) fail "the input 'rollback-on-failure' is ${NUVEM_ROLLBACK}: give true or false" 2 ;;
esac
case "${NUVEM_REPLACE:-false}" in
  true) deploy+=(--replace) ;;
  false) ;;
  *) fail "the input 'replace' is ${NUVEM_REPLACE}: give true or false" 2 ;;
esac

status=0
nuvem "${deploy[@]}" || status=$?
if [ "$status" -eq 0 ]; then
  summary "nuvem: deployed \`$(basename "$bundle")\` ($version, sha256 ${digest:0:12}) to $NUVEM_URL"
else
  summary "nuvem: deploying \`$(basename "$bundle")\` ($version) to $NUVEM_URL failed (exit $status)"
  fail "deploying $version to $NUVEM_URL failed; see the log above" "$status"
fi
