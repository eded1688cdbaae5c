"""The house rules of asgi_guard/stages/__init__.py, checked on the source (AST; no extra dependency).

1. No module of `asgi_guard/stages/<a>/` imports `asgi_guard.stages.<b>` (b != a), the stages package
   itself, or `asgi_guard.stack` / `.registry` / `.cli`: what two stages share lives in core/ or state/.
2. `asgi_guard.core` and `asgi_guard.state` import nothing from `asgi_guard.stages` or `.stack`.
3. Nothing in `asgi_guard` imports `asgi_guard_dev` at import time; only the command line
   (`asgi_guard/cli/`, its `services` command) may, inside the function (the dev extra may be absent).
4. No `isinstance` (or `type(x) is`) on backend classes, and no test of `.kind`, outside
   `asgi_guard/state/`: a store form is chosen by `asgi_guard.state.choose` only.

Imports under `if TYPE_CHECKING:` are type-only (no import-time edge) and are not counted; every
other import is, at any depth (function-level imports included). Known violations owned by other
work are listed in ALLOWED with the reason; the list only shrinks: an entry that no longer occurs
fails the test, so it is deleted with the fix.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "asgi_guard"
BACKEND_CLASSES = {"Backend", "MemoryBackend", "ValkeyBackend"}
# the operator console (asgi_guard/console/) sits at the stack's level: it may import stages, never
# the other way round
UPPER = {"asgi_guard.stack", "asgi_guard.registry", "asgi_guard.cli", "asgi_guard.console"}

# (importer, imported) -> why it is still there and who removes it
ALLOWED: dict[tuple[str, str], str] = {
}


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    line: int
    in_function: bool


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def _function_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


def edges(path: Path) -> list[Edge]:
    """Every runtime import of `path`, resolved to absolute module names."""
    return edges_of(path.read_text(), module_name(path), path.name == "__init__.py")


def edges_of(source: str, name: str, is_package: bool = False) -> list[Edge]:
    package = name if is_package else name.rpartition(".")[0]
    tree = ast.parse(source)
    typing_only, in_function = _type_checking_lines(tree), _function_lines(tree)
    found: list[Edge] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            # `from pkg import sub` may name a submodule: count both the package and pkg.sub
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        if node.lineno in typing_only:
            continue
        found += [Edge(name, t, node.lineno, node.lineno in in_function) for t in targets]
    return found


def all_edges() -> list[Edge]:
    return [edge for path in sorted(PACKAGE.rglob("*.py")) for edge in edges(path)]


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["asgi_guard", "stages"] else None


def broken_rule(edge: Edge) -> str | None:
    """Which rule `edge` breaks, or None."""
    importer, imported = edge.importer, edge.imported
    own = _stage_of(importer)
    if own is not None:
        other = _stage_of(imported)
        if imported == "asgi_guard.stages" or (other is not None and other != own):
            return "a stage imports another stage"
        if any(imported == up or imported.startswith(up + ".") for up in UPPER):
            return "a stage imports the layer above it"
    if importer.startswith(("asgi_guard.core", "asgi_guard.state")) and imported.startswith(
        ("asgi_guard.stages", "asgi_guard.stack")
    ):
        return "core/state import the layer above them"
    in_cli = importer == "asgi_guard.cli" or importer.startswith("asgi_guard.cli.")
    if imported.split(".")[0] == "asgi_guard_dev" and not (in_cli and edge.in_function):
        return "runtime code imports the dev services"
    return None


def violations() -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for edge in all_edges():
        if not _is_module(edge.imported):
            continue  # a name imported from a module, not a module
        rule = broken_rule(edge)
        if rule is not None:
            found[(edge.importer, edge.imported)] = f"{edge.importer}:{edge.line}: {rule}"
    return found


def test_import_rules_hold_except_the_listed_known_violations() -> None:
    found = violations()
    new = {key: why for key, why in found.items() if key not in ALLOWED}
    assert not new, "new layering violations:\n" + "\n".join(sorted(new.values()))


def test_allowlist_only_shrinks() -> None:
    found = violations()
    fixed = sorted(f"{a} -> {b}" for a, b in ALLOWED if (a, b) not in found)
    assert not fixed, "fixed, so delete from ALLOWED: " + ", ".join(fixed)


def _names(node: ast.expr) -> set[str]:
    return {
        n.id if isinstance(n, ast.Name) else n.attr
        for n in ast.walk(node)
        if isinstance(n, ast.Name | ast.Attribute)
    }


def backend_type_tests(path: Path) -> list[str]:
    return backend_type_tests_of(path.read_text(), str(path.relative_to(ROOT)))


def backend_type_tests_of(source: str, label: str) -> list[str]:
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("isinstance", "issubclass")
            and len(node.args) == 2
            and _names(node.args[1]) & BACKEND_CLASSES
        ):
            found.append(f"{label}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_names(o) & BACKEND_CLASSES for o in operands) and any(
                isinstance(op, ast.Is | ast.IsNot | ast.Eq | ast.NotEq) for op in node.ops
            ):
                found.append(f"{label}:{node.lineno}: {ast.unparse(node)}")
            elif any(isinstance(o, ast.Attribute) and o.attr == "kind" for o in operands):
                found.append(f"{label}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_backend_type_switch_outside_state() -> None:
    state = PACKAGE / "state"
    found = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        if state not in path.parents
        for hit in backend_type_tests(path)
    ]
    assert not found, "choose the form with asgi_guard.state.choose:\n" + "\n".join(found)


def test_the_checks_see_what_they_must() -> None:
    """The scanner itself: each kind of planted violation is found, and what is allowed is not."""
    planted = """
from typing import TYPE_CHECKING
import asgi_guard_dev.valkey
from asgi_guard.stages.cache import keys
from asgi_guard.stages.rate_limit.spec import Decision
from ..cache.store import Hit
from asgi_guard import registry
from asgi_guard.state import choose
if TYPE_CHECKING:
    from asgi_guard.stack import GuardMiddleware
"""
    found = {
        (e.imported, broken_rule(e))
        for e in edges_of(planted, "asgi_guard.stages.rate_limit.stage")
        if _is_module(e.imported)
    }
    assert ("asgi_guard_dev.valkey", "runtime code imports the dev services") in found
    assert ("asgi_guard.stages.cache.keys", "a stage imports another stage") in found
    assert ("asgi_guard.stages.cache.store", "a stage imports another stage") in found  # relative
    assert ("asgi_guard.registry", "a stage imports the layer above it") in found
    assert ("asgi_guard.stages.rate_limit.spec", None) in found
    assert ("asgi_guard.state", None) in found
    assert all(imported != "asgi_guard.stack" for imported, _ in found), "type-only imports are not edges"
    core = edges_of("from asgi_guard.stages.cache import store\n", "asgi_guard.core.http")
    assert any(broken_rule(e) == "core/state import the layer above them" for e in core)
    cli = edges_of("def services():\n    import asgi_guard_dev.pulsar\n", "asgi_guard.cli")
    assert [broken_rule(e) for e in cli] == [None]

    switches = "isinstance(b, (MemoryBackend, int))\nif b.kind == 'memory': pass\ntype(b) is ValkeyBackend\n"
    assert len(backend_type_tests_of(switches, "x.py")) == 3
    assert not backend_type_tests_of("isinstance(store, MemoryRateLimiter)\n", "x.py")
