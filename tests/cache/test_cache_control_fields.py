"""Hypothesis: the cache's response rules read a response once (`control.fields`) and decide as
the full rules do (RFC 9111 §3, §4.2.1; `control.storability`), short cut included.

- `fields` joins a field's values as `header` does (RFC 9110 §5.3), for any header list;
- a response without Cache-Control, Set-Cookie, Vary, Expires or Age takes the short cut; an empty
  Cache-Control value (no directive, so the same meaning) forces the full rules, which must agree.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from asgi_guard.stages.cache import control

NAMES = [
    b"cache-control", b"set-cookie", b"vary", b"expires", b"date", b"age", b"content-type",
    b"content-length", b"content-encoding", b"etag", b"x-other",
]  # fmt: skip
VALUES = st.sampled_from(
    [b"", b"public", b"max-age=5", b"no-store", b"private", b"*", b"accept", b"2", b"text/plain",
     b"gzip", b'"v1"', b"Thu, 01 Jan 2037 00:00:00 GMT", b"s-maxage=0, stale-while-revalidate=9"]
)  # fmt: skip
headers = st.lists(st.tuples(st.sampled_from(NAMES), VALUES), max_size=8)
plain = st.lists(
    st.tuples(st.sampled_from([b"content-type", b"content-length", b"etag", b"date", b"x-other"]), VALUES),
    max_size=5,
)


@given(headers)
def test_fields_join_each_field_as_header_does(raw: list[tuple[bytes, bytes]]) -> None:
    found = control.fields(raw)
    for name in control.RESPONSE_FIELDS:
        assert found.get(name) == control.header(raw, name)
    assert set(found) <= control.RESPONSE_FIELDS


@given(
    plain,
    st.sampled_from([200, 203, 404]),
    st.sampled_from([0.0, 1.0, 60.0]),
    st.booleans(),
    st.booleans(),
)
def test_the_short_cut_decides_as_the_full_rules(
    raw: list[tuple[bytes, bytes]], status: int, ttl: float, per_principal: bool, credentialed: bool
) -> None:
    def decide(found: control.Fields) -> control.Storability:
        return control.storability(
            status,
            found,
            route_ttl=ttl,
            stale_cap=30.0,
            per_principal=per_principal,
            credentialed=credentialed,
            allow=frozenset(),
            now=1_000.0,
        )

    found = control.fields(raw)
    assert decide(found) == decide({**found, control.CACHE_CONTROL: b""})


request_headers = st.lists(
    st.tuples(
        st.sampled_from([b"accept", b"Accept", b"accept-encoding", b"cookie", b"x-tenant", b"host"]),
        st.sampled_from([b"", b"gzip", b"GZIP,  br", b"a=1", b"t1", b"text/html, */*"]),
    ),
    max_size=6,
)


@given(request_headers, st.lists(st.sampled_from(["accept", "accept-encoding", "x-tenant", "origin"])))
def test_a_fingerprint_digests_one_name_as_it_digests_them_all(
    raw: list[tuple[bytes, bytes]], names: list[str]
) -> None:
    """Per-name digests (made on first use) equal the digests of every header made at once, so
    the variant a lookup selects does not depend on which names were asked for first."""
    every = control._digests(raw)
    one_by_one = control.fingerprint(raw)
    for name in names:
        assert (name in one_by_one) == (name in every)
        if name in every:
            assert one_by_one[name] == every[name]
    ordered = sorted(set(names))
    assert control.secondary(ordered, control.fingerprint(raw)) == control.secondary(ordered, every)
    assert dict(control.fingerprint(raw)) == every
