"""Exceptions raised at configuration time (never at request time)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A route's config is invalid; the message names the route and the field."""


class BackendUnavailable(RuntimeError):
    """A shared-state backend did not answer in time or refused the call."""
