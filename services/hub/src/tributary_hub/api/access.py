"""Who may touch which topic (shared by the topic and event routes) and which unitop. Authorization before
disclosure: the ACL is checked before anything that depends on the topic (404 for an unknown or impossible name,
422 against its schema), so a caller outside it cannot probe which topics exist."""

from __future__ import annotations

from tributary_common.auth import Forbidden, Principal
from tributary_common.names import TOPIC_RE, InvalidName, validate_pattern

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


def may_unitop(principal: Principal, name: str) -> None:
    if not principal.may_unitop(name):
        raise Forbidden(f"unitop {name!r} is outside the token's unitops ACL")


def known_name(topic: str) -> str:
    if not TOPIC_RE.fullmatch(topic):
        raise NotFound(f"topic {topic!r} does not exist (not a valid topic name)", code="unknown_topic")
    return topic


def see_topic(principal: Principal, topic: str) -> str:
    """403 unless the caller's ACL touches `topic`; then 404 for a name no topic can have."""
    if not principal.may_topic(topic):
        raise Forbidden(f"topic {topic!r} is outside the token's topics ACL")
    return known_name(topic)


def own_topic(principal: Principal, topic: str) -> str:
    """403 unless the caller's ACL covers all of `topic`; then 404 for a name no topic can have."""
    if not principal.may_pattern(f"{topic}.#"):
        raise Forbidden(f"the token's topics ACL does not cover all of topic {topic!r}")
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
    denied = sorted({k for k in keys if not principal.may_key(k)})
    if denied:
        raise Forbidden(f"the token's topics ACL does not allow publishing to {denied[:5]}")
