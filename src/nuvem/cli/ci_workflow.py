"""`nuvem init --ci github`: a starter workflow that tests, packages and deploys the stack
with nuvem's composite actions (.github/actions/ in nuvem's repository, docs/delivery.md)."""

from __future__ import annotations

from pathlib import Path

from nuvem import __version__
from nuvem.errors import BadRequest, Conflict

# Where users' workflows take the actions from, at the tag of the CLI that wrote them: the
# release workflow tags every version vX.Y.Z. A fork or a mirror passes --actions-repo.
ACTIONS_REPOSITORY = "nuvem-dev/nuvem"
CHECKOUT = "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1"
WORKFLOW = Path(".github") / "workflows" / "nuvem.yml"
SYSTEMS = ("github",)

GITHUB = """\
# nuvem: tests on every pull request; on main, the stack is packaged, uploaded to the
# gateway, waited for until ready, and rolled back if a function does not get ready.
# Set once (docs/delivery.md in nuvem):
#   gh variable set NUVEM_URL --body https://gw.example.com
#   gh secret set NUVEM_ADMIN_PASSWORD
name: nuvem

on:
  push:
    branches: [main]
  pull_request:

permissions:
  contents: read

jobs:
  test:
    runs-on: ubuntu-24.04
    timeout-minutes: 20
    steps:
      - uses: {checkout}
        with:
          persist-credentials: false
      - uses: {actions}/nuvem-setup@{ref}
      - name: Package (checks the stack file and every function's files)
        run: nuvem package -f {stack} -o "$RUNNER_TEMP/bundle"
      - name: Test
        run: |
          if [ -d tests ]; then
            python -m pip install --quiet pytest
            python -m pytest
          fi

  deploy:
    needs: test
    if: github.event_name == 'push' && github.ref == 'refs/heads/main'
    runs-on: ubuntu-24.04
    timeout-minutes: 30
    environment:
      name: production
      url: ${{{{ vars.NUVEM_URL }}}}
    concurrency:
      group: nuvem-deploy-production
      cancel-in-progress: false
    steps:
      - uses: {checkout}
        with:
          fetch-depth: 0 # the commits since the last vX.Y.Z tag make the version
          persist-credentials: false
      - uses: {actions}/nuvem-setup@{ref}
      - id: version
        run: echo "version=$(nuvem version --next)" >> "$GITHUB_OUTPUT"
      - id: auth
        uses: {actions}/nuvem-auth@{ref}
        with:
          gateway-url: ${{{{ vars.NUVEM_URL }}}}
          admin-password: ${{{{ secrets.NUVEM_ADMIN_PASSWORD }}}}
          key-functions: {functions}
      - uses: {actions}/nuvem-deploy@{ref}
        with:
          stack-file: {stack}
          version: ${{{{ steps.version.outputs.version }}}}
      - name: Smoke test
        env:
          AUTHORIZATION: ${{{{ steps.auth.outputs.header }}}}
        run: curl -fsS -H "$AUTHORIZATION" "$NUVEM_URL/function/{smoke}"
      - if: always() && steps.auth.outputs.key-id != ''
        uses: {actions}/nuvem-auth@{ref}
        with:
          gateway-url: ${{{{ vars.NUVEM_URL }}}}
          admin-password: ${{{{ secrets.NUVEM_ADMIN_PASSWORD }}}}
          revoke: ${{{{ steps.auth.outputs.key-id }}}}
"""


def github_workflow(functions: list[str], stack: str = "nuvem.yaml", repository: str = "") -> str:
    """The starter workflow for a stack of `functions` (the first is smoke-tested)."""
    if not functions:
        raise BadRequest("the stack declares no functions", "add one to deploy it from CI")
    return GITHUB.format(
        checkout=CHECKOUT,
        actions=f"{repository or ACTIONS_REPOSITORY}/.github/actions",
        ref=f"v{__version__}",
        stack=stack,
        functions=",".join(functions),
        smoke=functions[-1],
    )


def target(folder: Path, system: str) -> Path:
    """Where the starter for `system` goes; refuses an unknown system or an existing file,
    before anything is written."""
    if system not in SYSTEMS:
        raise BadRequest(
            f"no starter workflow for CI {system!r}", f"use one of: {', '.join(SYSTEMS)}"
        )
    path = folder / WORKFLOW
    if path.exists():
        raise Conflict(f"{path} already exists; nothing was written", "edit it, or remove it first")
    return path


def write(folder: Path, system: str, functions: list[str], repository: str = "") -> Path:
    """Write the starter workflow for `system` into `folder`; never over an existing one."""
    path = target(folder, system)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(github_workflow(functions, repository=repository))
    return path
