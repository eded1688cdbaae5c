"""`path_format` (how policies and routes are compared) is Starlette's, without compiling a regex."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.routing import compile_path

from asgi_guard.registry import path_format

_NAME = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,6}", fullmatch=True)
_PARAM = st.tuples(_NAME, st.sampled_from(["", ":int", ":str", ":path", ":float", ":uuid"])).map(
    lambda p: "{" + p[0] + p[1] + "}"
)
_TEXT = st.from_regex(r"[a-z0-9\-./]{0,6}", fullmatch=True)


@settings(max_examples=200)
@given(st.lists(st.tuples(_TEXT, _PARAM), max_size=4), _TEXT)
def test_path_format_is_starlettes(parts: list[tuple[str, str]], tail: str) -> None:
    names = [param.strip("{}").split(":")[0] for _, param in parts]
    template = "/" + "".join(text + param for text, param in parts) + tail
    if len(set(names)) != len(names):
        return  # Starlette refuses duplicated parameter names
    assert path_format(template) == compile_path(template)[1]
