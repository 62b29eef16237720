#!/usr/bin/env bash
# nuvem-setup: the nuvem CLI in a virtual environment of its own, put on PATH for the job's
# later steps. Inputs come as environment variables (action.yml), never spliced into code.
#   NUVEM_PACKAGE      what pip installs: nuvem==1.2.0, a wheel's path or URL, a git URL
#   NUVEM_PIP_OPTIONS  more pip options, split on spaces (e.g. --index-url URL)
#   NUVEM_VENV         where the environment goes (default: $RUNNER_TEMP/nuvem-cli)
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/github.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/github.sh" nuvem-setup

require NUVEM_PACKAGE package
case "$NUVEM_PACKAGE" in
  # The default names this action's repository and ref; a local `uses: ./...` has neither.
  git+https://github.com/@*) fail "no repository to install nuvem from: set the input 'package' (e.g. nuvem==1.2.0, or . in nuvem's own repository)" 2 ;;
esac

venv="${NUVEM_VENV:-${RUNNER_TEMP:-${TMPDIR:-/tmp}}/nuvem-cli}"
python3 -m venv "$venv"
read -r -a options <<<"${NUVEM_PIP_OPTIONS:-}"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${options[@]}" "$NUVEM_PACKAGE"

version=$("$venv/bin/nuvem" --version)
version=${version#nuvem }
if [ -n "${GITHUB_PATH:-}" ]; then
  printf '%s\n' "$venv/bin" >>"$GITHUB_PATH"
fi
set_output version "$version"
set_output path "$venv/bin"
printf 'installed %s in %s\n' "$version" "$venv"
