"""SecurityConfig: what is rejected at registration, and the safe defaults."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from asgi_guard import JobConfig, RouteRegistry
from asgi_guard.config import SecurityConfig
from asgi_guard.stages.security.stage import SecurityMiddleware


def test_defaults_are_anonymous_and_off() -> None:
    config = SecurityConfig()
    assert config.auth_type_required is None
    assert config.roles_match == "any"
    assert not SecurityMiddleware.enabled_for(JobConfig().security)


@pytest.mark.parametrize("spelling", ["jwt", "JWT", "Bearer", "oauth2", " OIDC "])
def test_auth_type_spellings(spelling: str) -> None:
    config = SecurityConfig(auth_type_required=spelling)
    assert config.auth_type_required == "jwt"
    assert SecurityMiddleware.enabled_for(JobConfig(security=config).security)


@pytest.mark.parametrize("empty", ["", "none", None])
def test_empty_auth_type_is_anonymous(empty: str | None) -> None:
    assert SecurityConfig(auth_type_required=empty).auth_type_required is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"auth_type_required": "basic"}, "unsupported auth_type_required"),
        ({"ip_whitelist_enabled": True}, "non-empty ip_allowlist"),
        ({"ip_whitelist_enabled": True, "ip_allowlist": ["10.0.0.0/33"]}, "not an address or CIDR"),
        ({"user_permissions_required": ["read"]}, "need an authenticated caller"),
        ({"mfa_required": True}, "need an authenticated caller"),
        ({"auth_type_required": "jwt", "roles_match": "some"}, "roles_match"),
        ({"auth_type_required": "jwt", "mfa_totp_resolver": "no_colon"}, "module:function"),
        ({"auth_type_required": "jwt", "mfa_totp_header": "bad header"}, "plain header name"),
        ({"auth_type_requird": "jwt"}, "Extra inputs"),
    ],
)
def test_invalid_configs_fail_at_registration(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RouteRegistry().register("/x", JobConfig(security=fields))


def test_required_scopes_combine_permissions_and_profile_scope() -> None:
    config = SecurityConfig(
        auth_type_required="jwt", user_permissions_required=["a", "b"], user_profile_scope_required="profile"
    )
    assert config.required_scopes == frozenset({"a", "b", "profile"})


def test_security_from_toml_tables() -> None:
    registry = RouteRegistry.from_mapping(
        {
            "bases": {"authed": {"security": {"auth_type_required": "jwt", "required_claims": ["exp"]}}},
            "routes": {
                "io_job": {
                    "path": "/jobs/{resource_id}",
                    "methods": ["POST"],
                    "extends": "authed",
                    "security": {
                        "auth_type_required": "jwt",
                        "permission_roles_required": ["admin", "db_user"],
                        "roles_match": "all",
                        "ip_whitelist_enabled": True,
                        "ip_allowlist": ["10.0.0.0/8"],
                    },
                }
            },
        }
    )
    config, _ = registry.resolve("POST", "/jobs/1")
    assert config.security.roles_match == "all"
    assert config.security.ip_allowlist == ["10.0.0.0/8"]
