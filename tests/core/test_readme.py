"""README and docs/ stay true.

- Python blocks marked `<!-- test: run -->` (the comment on the line right before the fence) run, in
  page order, in one namespace per page; `<!-- test: check ... -->` comments hold hidden set-up and
  assertions that run in the same namespace at their place in the page.
- Every `from asgi_guard... import ...` line of any Python block imports.
- docs/reference/config.md holds what scripts/config_reference.py prints today.
- docs/reference/cli.md names every command and option of `asgi-guard`.
- `mkdocs build --strict` passes (when mkdocs is installed).
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import importlib.util
import inspect
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]

RUN_MARK = "<!-- test: run -->"
_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)\s*(?P<info>[^\n`]*)$")
_CHECK = re.compile(r"<!-- test: check\n(?P<code>.*?)-->", re.S)


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the first code line
    code: str
    kind: str  # "python" (a fenced block), "check" (a hidden comment)
    run: bool


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def blocks(page: Path) -> list[Block]:
    """Fenced Python blocks and hidden check comments of a page, in order."""
    lines = page.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip().startswith("<!-- test: check"):
            end = i
            while "-->" not in lines[end]:
                end += 1
            code = "\n".join(lines[i + 1 : end])
            found.append(Block(page, i + 2, textwrap.dedent(code), "check", True))
            i = end + 1
            continue
        fence = _FENCE.match(line)
        if fence:
            marker, indent = fence["fence"], len(fence["indent"])
            end = i + 1
            while end < len(lines) and not lines[end].strip().startswith(marker):
                end += 1
            body = "\n".join(text[indent:] for text in lines[i + 1 : end])
            info = fence["info"].split()
            if info and info[0] in ("python", "py"):
                marked = i > 0 and lines[i - 1].strip() == RUN_MARK
                found.append(Block(page, i + 2, body, "python", marked))
            i = end + 1
            continue
        i += 1
    return found


def test_every_run_marker_sits_on_a_python_block() -> None:
    for page in PAGES:
        lines = page.read_text().splitlines()
        for n, line in enumerate(lines):
            if line.strip() == RUN_MARK:
                following = lines[n + 1] if n + 1 < len(lines) else ""
                assert following.strip() in ("```python", "```py"), (
                    f"{_rel(page)}:{n + 1}: {RUN_MARK} must be the line right before a ```python fence"
                )


def _runnable_pages() -> list[Path]:
    return [page for page in PAGES if any(b.run for b in blocks(page))]


def test_readme_and_docs_have_runnable_examples() -> None:
    names = {_rel(page) for page in _runnable_pages()}
    assert "README.md" in names
    assert "docs/getting-started.md" in names
    assert len(names) >= 8, names


def _execute(block: Block, namespace: dict[str, Any]) -> None:
    # Pad the source so that tracebacks name the line of the Markdown page.
    source = "\n" * (block.line - 1) + block.code
    code = compile(source, _rel(block.page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    result = eval(code, namespace)
    if inspect.iscoroutine(result):
        asyncio.run(result)


@pytest.fixture
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Examples see no ASGI_GUARD_* settings of the caller, no .env, and write caches under tmp."""
    for name in list(os.environ):
        if name.startswith("ASGI_GUARD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ASGI_GUARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    saved = dict(os.environ)
    yield tmp_path
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.parametrize("page", _runnable_pages(), ids=_rel)
def test_examples_run(page: Path, clean_environment: Path) -> None:
    module = ModuleType(f"docs_example_{page.stem.replace('-', '_')}")
    module.__dict__["os"] = os  # for the hidden set-up comments
    sys.modules[module.__name__] = module  # dataclasses and pydantic look a class's module up
    try:
        for block in blocks(page):
            if block.run:
                _execute(block, module.__dict__)
    finally:
        sys.modules.pop(module.__name__, None)


def _imports(code: str) -> list[tuple[str, list[str]]]:
    """(module, names) of each `from asgi_guard... import ...` in a block (a fragment too)."""
    try:
        statements = [ast.parse(code)]
    except SyntaxError:  # a fragment: parse its import lines one by one
        statements = []
        for line in code.splitlines():
            if line.lstrip().startswith("from asgi_guard"):
                try:
                    statements.append(ast.parse(line.strip()))
                except SyntaxError:
                    continue
    found = []
    for tree in statements:
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "asgi_guard":
                found.append((node.module or "", [alias.name for alias in node.names]))
    return found


def test_documented_imports_exist() -> None:
    """Also in the blocks that do not run: an import a page shows must work today."""
    problems = []
    checked = 0
    for page in PAGES:
        for block in blocks(page):
            for module_name, names in _imports(block.code):
                checked += 1
                try:
                    module = importlib.import_module(module_name)
                except ImportError as exc:
                    problems.append(f"{_rel(page)}:{block.line}: {module_name}: {exc}")
                    continue
                for name in names:
                    if not hasattr(module, name):
                        try:
                            importlib.import_module(f"{module_name}.{name}")
                        except ImportError:
                            problems.append(f"{_rel(page)}:{block.line}: {module_name} has no {name}")
    assert not problems, "\n".join(problems)
    assert checked >= 20, checked


def _config_reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "config_reference", ROOT / "scripts" / "config_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_reference_is_current() -> None:
    module = _config_reference()
    page = (ROOT / module.TARGET).read_text()
    assert module.embed(page) == page, "run: python scripts/config_reference.py --write"


def test_cli_reference_names_every_command_and_option() -> None:
    import typer

    from asgi_guard.cli import app

    page = (DOCS / "reference" / "cli.md").read_text()
    missing = []

    def walk(command: Any, prefix: str) -> None:
        for param in command.params:
            missing.extend(
                f"{prefix} {option}"
                for option in param.opts
                if option.startswith("--") and option != "--help" and option not in page
            )
        for name, sub in getattr(command, "commands", {}).items():
            full = f"{prefix} {name}"
            if full not in page:
                missing.append(full)
            walk(sub, full)

    walk(typer.main.get_command(app), "asgi-guard")
    assert not missing, f"docs/reference/cli.md does not mention: {missing}"


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        pytest.skip('mkdocs or mkdocs-material is not installed (pip install -e ".[docs]")')
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert not warnings, "\n".join(warnings)
    assert (tmp_path / "site" / "index.html").exists()


def test_readme_is_short_and_links_to_pages_that_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 300
    for target in re.findall(r"\]\((docs/[^)#\s]+)", readme):
        assert (ROOT / target).exists(), f"README links to missing {target}"


def test_docs_fetch_no_web_fonts() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    assert re.search(r"^\s+font: false", config, re.M), "theme.font must be false (no Google Fonts)"
