"""Dependencies point one way, top to bottom (docs/architecture-notes.md): a module may import
its own package, its tier's other packages and anything in lower tiers; never a higher tier.
Imports inside functions count too: a lazy import is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "nuvem"

# Top to bottom. Packages in one tier may import each other.
TIERS: list[set[str]] = [
    {"cli"},
    {"platform"},
    {"gateway"},
    {"jobs", "control"},
    {"routing", "runtime", "cluster", "providers", "stores", "metrics", "models"},
    {"stack", "security", "release"},
    {"errors", "config", "handler", "backoff", "startup_marks"},
]
TIER_OF = {part: index for index, tier in enumerate(TIERS) for part in tier}


def _part(module: str) -> str | None:
    """`nuvem.gateway.app` -> `gateway`; None for `nuvem` itself or foreign modules."""
    names = module.split(".")
    return names[1] if len(names) > 1 and names[0] == "nuvem" else None


def _imports(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "nuvem":
                found += [(node.lineno, f"nuvem.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def _violations(package: Path = PACKAGE) -> list[str]:
    problems = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        own = relative.parts[0].removesuffix(".py")
        if own == "__init__":
            continue
        if own not in TIER_OF:
            problems.append(f"{relative}: package {own!r} has no tier; add it to TIERS")
            continue
        for line, module in _imports(path):
            target = _part(module)
            if target is None or target == own or target == "__init__":
                continue
            if target not in TIER_OF:
                continue  # a module of the top-level package not in a tier: caught above
            if TIER_OF[target] < TIER_OF[own]:
                problems.append(f"{relative}:{line}: {own} imports {module}, a higher tier")
    return problems


def test_dependencies_point_down() -> None:
    assert _violations() == []


def test_the_walk_sees_an_upward_import(tmp_path: Path) -> None:
    # The check itself can fail: a lazy upward import inside a function is reported.
    fake = tmp_path / "nuvem"
    (fake / "stores").mkdir(parents=True)
    (fake / "stores" / "bad.py").write_text("def f():\n    from nuvem.gateway import app\n")
    assert _violations(fake) == ["stores/bad.py:2: stores imports nuvem.gateway, a higher tier"]
