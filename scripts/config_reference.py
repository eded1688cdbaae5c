"""Print the config reference (every JobConfig section and GuardSettings field) as Markdown tables.

docs/reference/config.md holds this script's output between its markers; refresh it with
`python scripts/config_reference.py --write` (tests/core/test_readme.py checks that it is current).
"""

from __future__ import annotations

import enum
import re
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from asgi_guard import GuardSettings, JobConfig


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, enum.Enum):
        value = value.value
    text = repr(value)
    return f"`{text}`" if len(text) < 60 else f"`{text[:57]}...`"


def _type(field: FieldInfo) -> str:
    annotation = field.annotation
    text = getattr(annotation, "__name__", None) or str(annotation)
    text = re.sub(r"asgi_guard(\.\w+)*\.(?=[A-Z])", "", text.replace("typing.", ""))
    return text.replace("|", "\\|")


def table(model: type[BaseModel], prefix: str = "") -> list[str]:
    rows = [f"| `{prefix or model.__name__}` field | type | default | meaning |", "|---|---|---|---|"]
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            nested.append((f"{prefix}{name}." if prefix else f"{name}.", annotation))
            rows.append(f"| `{name}` | {annotation.__name__} | (section) | see below |")
            continue
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{name}` | {_type(field)} | {_default(field)} | {description} |")
    out = [*rows, ""]
    for sub_prefix, sub_model in nested:
        # A heading, so that stage pages can link to it: `#rate_limittoken_bucket-tokenbucketconfig`.
        out.append(f"### `{sub_prefix[:-1]}` ({sub_model.__name__})\n")
        out.extend(table(sub_model, sub_prefix))
    return out


TARGET = "docs/reference/config.md"
START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"


def render() -> str:
    lines = ["## JobConfig (per route)", "", *table(JobConfig, "")]
    lines += ["## GuardSettings (global; environment `ASGI_GUARD_<FIELD>`, nested with `__`)", ""]
    lines += table(GuardSettings, "")
    return "\n".join(lines).rstrip() + "\n"


def embed(page: str) -> str:
    """The page with the text between its markers replaced by the current reference."""
    head, start, rest = page.partition(START)
    _, end, tail = rest.partition(END)
    if not (start and end):
        raise ValueError(f"the page has no {START} ... {END} markers")
    return f"{head}{START}\n{render()}{END}{tail}"


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    if sys.argv[1:2] == ["--write"]:
        path = Path(sys.argv[2]) if len(sys.argv) > 2 else root / TARGET
        path.write_text(embed(path.read_text()))
    else:
        print(render())


if __name__ == "__main__":
    main()
