"""Fixtures of the security tests (the helpers live in seckit.py)."""

from seckit import ec_key, jwks_server, rsa_key, rsa_key2

__all__ = ["ec_key", "jwks_server", "rsa_key", "rsa_key2"]
