#!/usr/bin/env bash
# nuvem-auth: exchange the gateway's admin secret for an API key, and hand both to the
# job's later steps: the admin credentials (as NUVEM_URL and NUVEM_ADMIN_PASSWORD) for
# nuvem-deploy, the key as an `Authorization: Bearer` header for calling the functions.
# With NUVEM_REVOKE_KEY it revokes that key instead (the job's last step).
#   NUVEM_URL, NUVEM_ADMIN_PASSWORD  the gateway and its admin password (a secret)
#   NUVEM_KEY_NAME                   the key's label (default: ci-<repository>-<run id>)
#   NUVEM_KEY_FUNCTIONS              comma-separated functions it may invoke (default: all)
#   NUVEM_REVOKE_KEY                 a key id to revoke; nothing is created
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/github.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/github.sh" nuvem-auth

require NUVEM_URL gateway-url
require NUVEM_ADMIN_PASSWORD admin-password
mask "$NUVEM_ADMIN_PASSWORD"
export NUVEM_URL NUVEM_ADMIN_PASSWORD

if [ -n "${NUVEM_REVOKE_KEY:-}" ]; then
  nuvem keys revoke "$NUVEM_REVOKE_KEY"
  exit 0
fi

name="${NUVEM_KEY_NAME:-ci-${GITHUB_REPOSITORY:-local}-${GITHUB_RUN_ID:-0}}"
args=(keys create --name "$name")
if [ -n "${NUVEM_KEY_FUNCTIONS:-}" ]; then
  args+=(--functions "$NUVEM_KEY_FUNCTIONS")
fi
# A wrong password or an unreachable gateway fails here, with the CLI's message and exit code.
key=$(nuvem "${args[@]}") || fail "no API key from $NUVEM_URL: see the error above" "$?"
mask "$key"
# Keys are nv_<12 hex id>_<secret> (nuvem.security.new_api_key).
key_id=${key#nv_}
key_id=${key_id%%_*}

set_env NUVEM_URL "$NUVEM_URL"
set_env NUVEM_ADMIN_PASSWORD "$NUVEM_ADMIN_PASSWORD"
set_env NUVEM_API_KEY "$key"
set_output api-key "$key"
set_output key-id "$key_id"
set_output header "Authorization: Bearer $key"
printf 'created API key %s (%s) on %s\n' "$key_id" "$name" "$NUVEM_URL"
