"""Where the commands write: rich consoles for humans, plain JSON for scripts and CI."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape


def console(stderr: bool = False) -> Console:
    """A console that does not wrap tables at 80 columns when the output is a pipe or a file."""
    stream = sys.stderr if stderr else sys.stdout
    wide = None if stream.isatty() else 240
    return Console(file=stream, width=wide, highlight=False, soft_wrap=False)


def print_json(data: Any) -> None:
    """One JSON document on stdout (sorted keys, so output diffs stay stable)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def error(message: str) -> None:
    console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)
