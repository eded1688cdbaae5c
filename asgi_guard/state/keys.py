"""One escaping rule for every part of every state key (rate limit, cache, credits, idempotency,
breaker, MFA), in memory and in Valkey.

`key_part` is injective: two different values never give the same part, and no value a client
chooses (a header, a JWT subject, a resource id, an Idempotency-Key) can equal a part the guard makes
itself. The guard's own parts are built from characters `key_part` never leaves bare:

- `~<ip>`: a client the guard knows only by its address: an anonymous principal (`principal_part`),
  the `ip` rate-limit part, and a client that sent no key header (rate limit `header:NAME`);
- `-`: "no resource id"; `*`: the global bucket; `#<hex>`: the digest of a long value;
- `:` separates parts, `|` separates parts inside one hash tag, `{` `}` delimit the cluster hash tag.

The rule: every character outside printable ASCII, and each of `% : { } ~ # * |`, becomes `%XX`
per UTF-8 byte (a lone surrogate, which has no UTF-8 form, is written as the bytes `surrogatepass`
gives it, so it too is escaped rather than crashing the encoder); the value `-` alone becomes `%2D`.
`%` itself is escaped, so decoding is unambiguous, hence the map is injective. Values longer than
`MAX_PART` characters become `#` + 128 bits of SHA-256 (distinct from every escaped value, which never
starts with a bare `#`; collisions only with SHA-256's).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress

MAX_PART = 128
_RESERVED = frozenset("%:{}~#*|")
_SAFE = frozenset(chr(c) for c in range(0x21, 0x7F)) - _RESERVED
FALLBACK = "~"  # prefix of a guard-made identity (never the first character of an escaped value)
NO_VALUE = "-"  # the guard's "none" part (an escaped value is never exactly "-")
EVERYONE = "*"  # the global bucket


def key_part(value: str) -> str:
    """`value` as one key part (see the module docstring for the rule)."""
    if len(value) > MAX_PART:
        return "#" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    if value == NO_VALUE:
        return "%2D"
    if (  # the common case, nothing to escape: C-level scans only
        value.isascii()
        and value.isprintable()
        and " " not in value
        and "%" not in value
        and ":" not in value
        and "{" not in value
        and "}" not in value
        and "~" not in value
        and "#" not in value
        and "*" not in value
        and "|" not in value
    ):
        return value
    safe = _SAFE
    return "".join(
        char if char in safe else "".join(f"%{b:02X}" for b in char.encode("utf-8", "surrogatepass"))
        for char in value
    )


def fallback_identity(value: str) -> str:
    """A guard-made identity (`~` + the escaped value): equal to no escaped client value."""
    return FALLBACK + key_part(value)


@functools.lru_cache(maxsize=4096)
def _block(address: str, prefix: int) -> str:
    try:
        ip = ipaddress.IPv6Address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, prefix), strict=False))


def client_block(address: str, prefix: int = 64) -> str:
    """What an anonymous client counts as: its IPv4 address (an IPv4-mapped IPv6 one included), or
    its IPv6 `/prefix` network: one subscriber holds a whole /64 (RFC 6177), so keying by the
    address would give it 2**64 budgets, owners or lock-out counters."""
    if prefix == 128 or ":" not in address:
        return address
    return _block(address, prefix)


def principal_part(subject: str | None, address: str) -> str:
    """Who made a request, as one key part: the verified JWT subject escaped (`key_part(subject)`),
    else the client address as a guard-made identity (`~` + escaped address).

    The two kinds never meet: an escaped subject never starts with a bare `~`, so the anonymous
    client at 10.1.2.3 (`~10.1.2.3`) and the user whose IdP subject is "10.1.2.3" (`10.1.2.3`) or
    "~10.1.2.3" (`%7E10.1.2.3`) hold three different keys. Every concern that keys state by who is
    asking (rate limit, idempotency, cache ownership) uses this, via `GuardContext.principal_key`.
    An anonymous IPv6 client is its /64 (`client_block`): rotating addresses inside it is one owner."""
    return key_part(subject) if subject is not None else FALLBACK + key_part(client_block(address))


def hash_tag(*parts: str) -> str:
    """`{part|part...}` of escaped parts: a client cannot steer the cluster slot, and two different
    part lists never share a tag."""
    return "{" + "|".join(key_part(part) for part in parts) + "}"


def join(*parts: str) -> str:
    """Escaped parts joined with `:` (injective over part lists of any length)."""
    return ":".join(key_part(part) for part in parts)
