"""Lazy re-exports for package `__init__` modules (PEP 562 module `__getattr__`).

A stage package re-exports its helpers (`from asgi_guard.stages.credits import credit_store`), but
importing the package must not import them: `asgi_guard.stages.X.config` sits inside the package, and
every `JobConfig` import loads each section's config. So names are imported on first use instead.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: `exports` maps a public name to the submodule (relative
    to `package`) that defines it; the value is imported on first access and then cached."""

    def __getattr__(name: str) -> Any:  # noqa: N807 - PEP 562 module hook
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
