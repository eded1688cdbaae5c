"""Hypothesis strategies for what a hostile client controls: headers, JWTs, JSON bodies and paths.

Everything is produced as raw bytes (header values as latin-1 bytes, bodies as bytes), because the
interesting inputs are exactly the ones a well-behaved client library refuses to send.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import quote, unquote

import jwt
from fuzz_app import SECRET
from hypothesis import strategies as st


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


latin1_text = st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=80)
visible_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80)
any_header_value = st.one_of(
    latin1_text, visible_text, st.sampled_from(["", " ", "\t", "null", "%00", "\x00"])
)

# -- JWTs -------------------------------------------------------------------------------------------
ALGS = ["HS256", "HS384", "HS512", "none", "None", "RS256", "ES256", "EdDSA", "", "hs256"]
weird_scalars = st.one_of(
    st.integers(),
    st.integers(min_value=10**18, max_value=10**19),
    st.just(10**400),
    st.just(-(10**400)),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.text(max_size=20),
    st.text(st.sampled_from("0123456789"), min_size=1, max_size=30),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
claim_names = st.sampled_from(
    ["sub", "exp", "nbf", "iat", "scope", "scp", "roles", "amr", "aud", "iss", "jti"]
)


@st.composite
def signed_weird_claims(draw: st.DrawFn) -> str:
    """A correctly signed HS256 token whose claims have the wrong types or ranges."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "alice",
        "exp": now + 3600,
        "iat": now,
        "scope": "jobs:write jobs:read",
        "amr": ["mfa"],
    }
    for name in draw(st.lists(claim_names, min_size=1, max_size=4, unique=True)):
        claims[name] = draw(weird_scalars)
    payload = json.dumps(claims, default=str).encode()
    header = json.dumps({"alg": "HS256", "typ": "JWT"}).encode()
    signing_input = f"{b64(header)}.{b64(payload)}".encode()
    import hashlib
    import hmac

    signature = hmac.new(SECRET.encode(), signing_input, hashlib.sha256).digest()
    return f"{signing_input.decode()}.{b64(signature)}"


@st.composite
def mutated_token(draw: st.DrawFn) -> str:
    """A valid token with one or more segments replaced, an odd alg, or extra dots."""
    now = int(time.time())
    good = jwt.encode(
        {"sub": "alice", "exp": now + 3600, "scope": "jobs:write", "amr": ["mfa"]}, SECRET, "HS256"
    )
    parts = good.split(".")
    choice = draw(st.integers(0, 5))
    if choice == 0:  # another header, same payload and signature
        header = {"alg": draw(st.sampled_from(ALGS)), "typ": draw(st.sampled_from(["JWT", "", "at+jwt"]))}
        if draw(st.booleans()):
            header["kid"] = draw(st.one_of(st.text(max_size=10), st.integers(), st.just("../../etc/passwd")))
        parts[0] = b64(json.dumps(header).encode())
    elif choice == 1:  # a random segment
        index = draw(st.integers(0, 2))
        parts[index] = draw(st.one_of(st.text(max_size=40), st.binary(max_size=30).map(b64)))
    elif choice == 2:  # payload that is not an object / not JSON
        parts[1] = b64(
            draw(st.sampled_from([b"[]", b"1", b'"x"', b"null", b"{", b"\xff\xfe", b'{"sub":"\\ud800"}']))
        )
    elif choice == 3:  # the wrong number of segments
        parts = parts[: draw(st.integers(0, 2))] + [""] * draw(st.integers(0, 3))
    elif choice == 4:  # alg none, no signature
        parts[0] = b64(json.dumps({"alg": draw(st.sampled_from(["none", "None", "NONE"]))}).encode())
        parts[2] = ""
    else:  # huge segment
        parts[1] = "A" * draw(st.integers(1000, 20000))
    return ".".join(parts)


tokens = st.one_of(signed_weird_claims(), mutated_token())
authorization = st.one_of(
    tokens.map(lambda t: "Bearer " + t),
    tokens.map(lambda t: "bearer  " + t),
    tokens,
    st.sampled_from(["Bearer", "Bearer ", "Basic YWxpY2U6cGFzcw==", "Bearer a b c", "Token x"]),
    any_header_value,
)

# -- forwarding and other headers --------------------------------------------------------------------
ip_like = st.one_of(
    st.ip_addresses().map(str),
    st.sampled_from(
        ["unknown", "_hidden", "[::1]:80", "1.2.3.4:80", "::ffff:10.0.0.1", "999.1.1.1", "", "0"]
    ),
    visible_text,
)
x_forwarded_for = st.lists(ip_like, max_size=6).map(", ".join) | any_header_value
forwarded = (
    st.lists(
        st.tuples(st.sampled_from(["for", "by", "proto", "host", "FOR"]), ip_like).map(
            lambda kv: f'{kv[0]}="{kv[1]}"' if ":" in kv[1] else f"{kv[0]}={kv[1]}"
        ),
        max_size=4,
    ).map(";".join)
    | any_header_value
)
idempotency_key = st.one_of(visible_text, latin1_text, st.text(min_size=250, max_size=300), st.just(""))
cache_control = (
    st.lists(
        st.sampled_from(
            [
                "no-cache",
                "no-store",
                "max-age=0",
                "max-age=-1",
                "max-age=99999999999999999999999",
                "max-stale",
                "only-if-cached",
                "private",
                'no-cache="set-cookie"',
                "max-age=abc",
                ",,,",
            ]
        ),
        max_size=4,
    ).map(", ".join)
    | any_header_value
)
request_id = st.one_of(visible_text, latin1_text, st.text(min_size=129, max_size=200), st.just(""))
totp = st.one_of(st.text(st.sampled_from("0123456789"), max_size=10), any_header_value)
api_key = st.one_of(visible_text, st.just("~127.0.0.1"), st.just("~1.2.3.4"), latin1_text)

HEADERS: dict[str, st.SearchStrategy[str]] = {
    "authorization": authorization,
    "x-forwarded-for": x_forwarded_for,
    "forwarded": forwarded,
    "idempotency-key": idempotency_key,
    "cache-control": cache_control,
    "x-request-id": request_id,
    "x-mfa-totp": totp,
    "x-api-key": api_key,
}


@st.composite
def header_sets(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    """Some of the hostile headers (sometimes twice), as raw latin-1 bytes."""
    names = draw(st.lists(st.sampled_from(sorted(HEADERS)), max_size=6))
    out = []
    for name in names:
        value = draw(HEADERS[name])
        out.append((name.encode(), value.encode("latin-1", "replace")))
    return out


# -- JSON bodies -------------------------------------------------------------------------------------
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
    ),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def json_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 9))
    secret: Any = draw(st.one_of(st.text(max_size=30), json_values))
    if kind == 0:  # well-formed object with arbitrary field types
        return json.dumps({"resource_id": draw(st.text(max_size=10)), "secret_value": secret}).encode()
    if kind == 1:  # deep nesting
        depth = draw(st.integers(100, 20000))
        return b'{"resource_id":"1","secret_value":' + b"[" * depth + b"]" * depth + b"}"
    if kind == 2:  # huge numbers
        digits = draw(st.integers(300, 20000))
        return b'{"resource_id":"1","secret_value":"x","other_data":' + b"9" * digits + b"e99999}"
    if kind == 3:  # invalid UTF-8
        junk = draw(st.binary(min_size=1, max_size=10).filter(lambda b: not _utf8(b)))
        return b'{"resource_id":"1","secret_value":"' + junk + b'"}'
    if kind == 4:  # lone surrogates, escaped (valid JSON) or raw (invalid UTF-8)
        esc = draw(st.sampled_from([b"\\ud800", b"\\udfff", b"\\ud800\\ud800", b"a\\udc00b"]))
        field = draw(st.sampled_from([b"secret_value", b"resource_id", b"other_data"]))
        return b'{"resource_id":"1","secret_value":"x","' + field + b'":"' + esc + b'"}'
    if kind == 5:  # duplicate keys
        return b'{"resource_id":"1","secret_value":"x","secret_value":' + json.dumps(secret).encode() + b"}"
    if kind == 6:  # not an object
        return json.dumps(draw(json_values)).encode()
    if kind == 7:  # truncated
        whole = json.dumps({"resource_id": "1", "secret_value": "abc"}).encode()
        return whole[: draw(st.integers(0, len(whole) - 1))]
    if kind == 8:  # NaN / Infinity literals, BOM, trailing garbage
        return draw(
            st.sampled_from(
                [
                    b'{"resource_id":"1","secret_value":NaN}',
                    b'{"resource_id":"1","secret_value":Infinity}',
                    b'\xef\xbb\xbf{"resource_id":"1","secret_value":"x"}',
                    b'{"resource_id":"1","secret_value":"x"} trailing',
                    b'{"resource_id":"1","secret_value":"x"}{"a":1}',
                ]
            )
        )
    return draw(st.binary(max_size=200))


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# -- paths -------------------------------------------------------------------------------------------
segment = st.one_of(
    st.text(
        st.characters(min_codepoint=0, max_codepoint=0x10FFFF, blacklist_categories=("Cs",)), max_size=12
    ),
    st.sampled_from(
        ["%0A", "%0D%0A", "%2F", "%2f..%2f", "..", ".", "", "%00", "%", "%zz", "a%2Fb", "\n", "\r\n"]
    ),
)


@st.composite
def paths(draw: st.DrawFn) -> tuple[str, bytes]:
    """(scope path, raw_path) as uvicorn builds them: near-miss variants of /fuzz/{id}; what a client
    cannot send raw (non-ASCII, controls) is percent-encoded in raw_path, and `path` is its decoding."""
    prefix = draw(
        st.sampled_from(["/fuzz/", "//fuzz/", "/fuzz//", "/FUZZ/", "/fuzz/%2F", "/./fuzz/", "/fuzz"])
    )
    seg = draw(segment)
    tail = draw(st.sampled_from(["", "/", "//", "/x", "%0A", "%2F"]))
    raw = quote(prefix + seg + tail, safe="/%:@!$&'()*+,;=~")
    return unquote(raw), raw.encode("ascii")
