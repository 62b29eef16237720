# shellcheck shell=bash
# What the nuvem actions' scripts share: the runner's files (outputs, environment, summary)
# and errors as annotations. Outside GitHub Actions (a test, another CI) the files default
# to /dev/null, so the scripts run anywhere the `nuvem` CLI does.

# Sourced with the action's name, which titles its error annotations.
action_name="${1:-nuvem}"

: "${GITHUB_OUTPUT:=/dev/null}"
: "${GITHUB_ENV:=/dev/null}"
: "${GITHUB_STEP_SUMMARY:=/dev/null}"

# A heredoc delimiter that no value holds, so a value with newlines cannot add lines of
# its own to the runner's files.
_delimiter() {
  printf 'nuvem_%s' "$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
}

_append() {  # FILE NAME VALUE
  local end
  end=$(_delimiter)
  printf '%s<<%s\n%s\n%s\n' "$2" "$end" "$3" "$end" >>"$1"
}

set_output() { _append "$GITHUB_OUTPUT" "$1" "$2"; }
set_env() { _append "$GITHUB_ENV" "$1" "$2"; }
summary() { printf '%s\n' "$*" >>"$GITHUB_STEP_SUMMARY"; }

# Hide a secret in the job's logs from here on.
mask() {
  [ -n "$1" ] && printf '::add-mask::%s\n' "$1"
  return 0
}

# Fail with an annotation that names the input to set.
fail() {
  printf '::error title=%s::%s\n' "$action_name" "$1" >&2
  exit "${2:-1}"
}

# VARIABLE INPUT: fail unless the variable behind an input is set.
require() {
  [ -n "${!1:-}" ] || fail "the input '$2' is empty: set it in the step's 'with:' (environment variable $1)" 2
}
