"""KeyRing and envelopes: round trip, binding to the field, rotation, and garbage that must not open."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from asgi_guard.core.errors import ConfigError
from asgi_guard.stages.encryption.crypto import (
    EnvelopeError,
    KeyRing,
    associated_data,
    b64url_encode,
    generate_key,
)

K1, K2 = os.urandom(32), os.urandom(32)
AAD = associated_data("/secrets/{id}", "secret")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(json_values)
def test_any_json_value_round_trips(value: Any) -> None:
    ring = KeyRing({"k1": K1})
    envelope = ring.encrypt(json.dumps(value).encode(), AAD)
    assert json.loads(ring.decrypt(envelope, AAD)) == value


def test_envelope_format() -> None:
    envelope = KeyRing({"k1": K1}).encrypt(b'"hello"', AAD)
    version, kid, nonce, sealed = envelope.split(".")
    assert (version, kid) == ("v1", "k1")
    assert len(base64.urlsafe_b64decode(nonce + "==")) == 12
    assert len(base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))) == len(b'"hello"') + 16
    assert "=" not in envelope and "hello" not in envelope


def test_same_plaintext_encrypts_differently() -> None:
    ring = KeyRing({"k1": K1})
    assert ring.encrypt(b"1", AAD) != ring.encrypt(b"1", AAD)


def test_value_is_bound_to_field_and_route() -> None:
    ring = KeyRing({"k1": K1})
    envelope = ring.encrypt(b'"x"', AAD)
    for other in (associated_data("/secrets/{id}", "other"), associated_data("/other", "secret")):
        with pytest.raises(EnvelopeError) as err:
            ring.decrypt(envelope, other)
        assert err.value.reason == "tampered"


def test_rotation_old_ids_still_decrypt_new_writes_use_primary() -> None:
    old = KeyRing({"k1": K1})
    written = old.encrypt(b"42", AAD)
    rotated = KeyRing({"k1": K1, "k2": K2}, primary="k2")
    assert rotated.decrypt(written, AAD) == b"42"
    assert rotated.encrypt(b"42", AAD).startswith("v1.k2.")
    assert KeyRing({"k2": K2, "k1": K1}).primary == "k2"  # default primary: the first


def test_unknown_key_id() -> None:
    written = KeyRing({"k1": K1}).encrypt(b"1", AAD)
    with pytest.raises(EnvelopeError) as err:
        KeyRing({"k2": K2}).decrypt(written, AAD)
    assert err.value.reason == "unknown-key"


def test_same_id_other_key_fails_authentication() -> None:
    written = KeyRing({"k1": K1}).encrypt(b"1", AAD)
    with pytest.raises(EnvelopeError) as err:
        KeyRing({"k1": K2}).decrypt(written, AAD)
    assert err.value.reason == "tampered"


def test_every_flipped_character_is_rejected() -> None:
    ring = KeyRing({"k1": K1})
    envelope = ring.encrypt(b'{"card":"4111"}', AAD)
    prefix = len("v1.k1.")
    for i in range(prefix, len(envelope)):
        if envelope[i] == ".":
            continue
        flipped = envelope[:i] + ("A" if envelope[i] != "A" else "B") + envelope[i + 1 :]
        with pytest.raises(EnvelopeError):
            ring.decrypt(flipped, AAD)


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "hello",
        "v1",
        "v1.k1",
        "v1.k1.abc",
        "v2.k1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
        "v1.k1.AAAAAAAAAAAAAAAA.",
        "v1.k1.AAAAAAAAAAAAAAAA.AAAA",
        "v1.k1.AAAAAAAAAAAAAAA!.AAAAAAAAAAAAAAAAAAAAAA",
        "v1.k1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAA AA",
        "v1.k1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA.extra",
        "v1.k1.AAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
        "v1.nope.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
        "v1.k1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
        "v1.k1.\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9.AAAA",
    ],
)
def test_garbage_never_opens(garbage: str) -> None:
    with pytest.raises(EnvelopeError):
        KeyRing({"k1": K1}).decrypt(garbage, AAD)


def test_from_settings_accepts_padded_and_unpadded_base64url() -> None:
    padded = base64.urlsafe_b64encode(K1).decode()
    ring = KeyRing.from_settings(
        {"a": SecretStr(padded), "b": SecretStr(b64url_encode(K2)), "c": generate_key()}
    )
    assert ring.key_ids == ("a", "b", "c") and ring.primary == "a"
    assert ring.decrypt(KeyRing({"a": K1}).encrypt(b"1", AAD), AAD) == b"1"


@pytest.mark.parametrize(
    ("keys", "primary", "message"),
    [
        ({}, None, "empty"),
        ({"k1": "not base64!!"}, None, "'k1' is not base64url"),
        ({"k1": b64url_encode(os.urandom(16))}, None, "must be 32 bytes, got 16"),
        ({"bad.id": generate_key()}, None, "key id 'bad.id'"),
        ({"k1": generate_key()}, "k9", "'k9' is not in encryption_keys"),
    ],
)
def test_bad_key_rings_are_config_errors(keys: dict[str, str], primary: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        KeyRing.from_settings({k: SecretStr(v) for k, v in keys.items()}, primary)
    for value in keys.values():
        assert value not in str(err.value)


def test_keys_never_in_repr() -> None:
    encoded = b64url_encode(K1)
    ring = KeyRing.from_settings({"k1": SecretStr(encoded)})
    text = repr(ring) + str(ring) + repr(vars(ring) if hasattr(ring, "__dict__") else ())
    assert "k1" in repr(ring)
    assert encoded not in text and K1.hex() not in text and repr(K1) not in text
