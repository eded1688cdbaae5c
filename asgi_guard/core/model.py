"""Shared base for every config model: strict, immutable once validated."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class GuardModel(BaseModel):
    """Frozen and closed: a typo in a route's config is an error at registration, not a silent no-op."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)
