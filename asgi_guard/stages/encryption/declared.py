"""The types a FastAPI route declares for the fields this stage encrypts, to check before sealing.

Once a value is sealed the app sees only an envelope string, so its own validation can no longer
refuse, say, `{}` where it declared `str`. The stage therefore validates each configured field's
plaintext against the route's body model first, in pydantic's lax mode as FastAPI does, and answers
422 when the app would have. Found from the app the server runs (`scope["app"]`): the FastAPI route
with the same path template and method, and its single, non-embedded body model; dotted paths walk
nested models, and lists on the way (as the stage walks arrays). A route without such a model (plain
Starlette, an embedded or several body parameters, a field typed `Any` or `dict`) declares no type
for the field, and any JSON value is sealed, as before.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel, TypeAdapter

Validators = dict[tuple[str, ...], TypeAdapter[Any]]


def declared_validators(
    app: Any, template: str, methods: frozenset[str], paths: Sequence[tuple[str, ...]]
) -> Validators:
    """A validator for each configured path whose type the app's route declares (maybe none)."""
    model = _body_model(app, template, methods)
    if model is None:
        return {}
    found: Validators = {}
    for parts in paths:
        annotation = _annotation_at(model, parts)
        if annotation is not None:
            found[parts] = TypeAdapter(annotation)
    return found


def _body_model(app: Any, template: str, methods: frozenset[str]) -> type[BaseModel] | None:
    router = getattr(app, "router", None)
    for route in getattr(router, "routes", ()):
        if getattr(route, "path_format", None) != template or not methods & set(
            getattr(route, "methods", ())
        ):
            continue
        params = getattr(getattr(route, "dependant", None), "body_params", None) or []
        if len(params) != 1 or getattr(params[0].field_info, "embed", False):
            return None
        model = _plain(params[0].field_info.annotation)
        return model if isinstance(model, type) and issubclass(model, BaseModel) else None
    return None


def _annotation_at(model: type[BaseModel], parts: tuple[str, ...]) -> Any | None:
    current: Any = model
    annotation: Any = None
    for part in parts:
        current = _plain(current)
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = next(
            (f for name, f in current.model_fields.items() if (f.alias or name) == part),
            None,
        )
        if field is None:
            return None
        annotation = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
        current = field.annotation
    if annotation is Any:
        return None
    return annotation


def _plain(annotation: Any) -> Any:
    """`X` from `X | None`, `Optional[X]` and `list[X]` (the stage walks arrays itself)."""
    while True:
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin in (typing.Union, types.UnionType):
            rest = [a for a in args if a is not type(None)]
            if len(rest) != 1:
                return annotation
            annotation = rest[0]
        elif (origin in (list, tuple, set, frozenset, Sequence) and args) or origin is Annotated:
            annotation = args[0]
        else:
            return annotation
