"""Who may touch which topic (shared by the topic and event routes) and which unitop. Authorization before
disclosure: the ACL is checked before anything that depends on the topic (404 for an unknown or impossible name,
422 against its schema), so a caller outside it cannot probe which topics exist."""

from __future__ import annotations

from tributary_common.auth import Forbidden, Principal
from tributary_common.names import MAX_ROUTING_KEY, TOPIC_RE, InvalidName, validate_pattern

from ..errors import Invalid, NotFound
from .contract import errors

TOPIC: tuple[tuple[int, str], ...] = (
    (403, "Missing scope, or the topic is outside the caller's ACL"),
    (404, "Unknown topic"),
)
ERRORS = errors(*TOPIC)
UNITOP: tuple[tuple[int, str], ...] = (
    (403, "Missing scope, or the unitop is outside the caller's ACL"),
    (404, "Unknown unitop"),
)
SHOWN = 64  # characters of a caller's name repeated in an error: a path segment may be most of a 64 KiB head


def shown(name: str) -> str:
    """`name` quoted for an error message, cut to SHOWN characters."""
    return repr(name[:SHOWN]) + ("…" if len(name) > SHOWN else "")


def may_unitop(principal: Principal, name: str) -> None:
    if not principal.may_unitop(name):
        raise Forbidden(f"unitop {shown(name)} is outside the token's unitops ACL")


def known_name(topic: str) -> str:
    if not TOPIC_RE.fullmatch(topic):
        raise NotFound(f"topic {shown(topic)} does not exist (not a valid topic name)", code="unknown_topic")
    return topic


def see_topic(principal: Principal, topic: str) -> str:
    """403 unless the caller's ACL touches `topic`; then 404 for a name no topic can have."""
    if not principal.may_topic(topic):
        raise Forbidden(f"topic {shown(topic)} is outside the token's topics ACL")
    return known_name(topic)


def own_topic(principal: Principal, topic: str) -> str:
    """403 unless the caller's ACL covers all of `topic`; then 404 for a name no topic can have."""
    if len(topic) > MAX_ROUTING_KEY:
        # No topic (nor pattern) is this long, so a 404 tells nothing; the ACL matcher would keep the name (up to
        # 64 KiB) in its token cache: thousands of such names, hundreds of MB.
        return known_name(topic)
    if not principal.may_pattern(f"{topic}.#"):
        raise Forbidden(f"the token's topics ACL does not cover all of topic {shown(topic)}")
    return known_name(topic)


def history_pattern(principal: Principal, topic: str, subject: str | None) -> str:
    """`<topic>.<subject pattern>` (or the whole topic), checked against the caller's ACL."""
    pattern = f"{topic}.{subject}" if subject else f"{topic}.#"
    try:
        validate_pattern(pattern)
    except InvalidName as exc:
        raise Invalid(str(exc), [{"loc": "/query/subject", "msg": str(exc)}], code="invalid_request") from exc
    if not principal.may_pattern(pattern):
        raise Forbidden(f"the token's topics ACL does not cover {pattern!r}")
    return pattern


def may_publish(principal: Principal, keys: list[str]) -> None:
    denied = sorted(k for k in set(keys) if not principal.may_key(k))  # each key once: a batch repeats them
    if denied:
        raise Forbidden(f"the token's topics ACL does not allow publishing to {denied[:5]}")
