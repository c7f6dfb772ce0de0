"""Validation of names: topics, subjects, subscription patterns, unitops and routing keys."""

from __future__ import annotations

import re

from .matcher import MAX_WILDCARDS, count_wildcards

TOPIC_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
SEGMENT_RE = re.compile(r"^[A-Za-z0-9_-]+$")
UNITOP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
# AMQP routing keys are at most 255 bytes.
MAX_ROUTING_KEY = 255


class InvalidName(ValueError):
    """A name, subject, pattern or routing key that breaks the rules; the message says which rule."""


def validate_topic(name: str) -> str:
    if not TOPIC_RE.fullmatch(name):
        raise InvalidName(
            f"invalid topic name {name!r}: must match ^[a-z][a-z0-9_-]{{0,62}}$ "
            "(lowercase letter first, then up to 62 of a-z 0-9 _ -)"
        )
    return name


def validate_subject(subject: str) -> str:
    """A subject is one or more dot-separated segments of [A-Za-z0-9_-]."""
    if subject == "":
        raise InvalidName("invalid subject '': must not be empty (omit it instead)")
    for i, seg in enumerate(subject.split(".")):
        if not SEGMENT_RE.fullmatch(seg):
            raise InvalidName(
                f"invalid subject {subject!r}: segment {i} {seg!r} must be one or more of A-Z a-z 0-9 _ -"
            )
    if len(subject.encode()) > MAX_ROUTING_KEY - 64:
        raise InvalidName(f"invalid subject: longer than {MAX_ROUTING_KEY - 64} bytes")
    return subject


def validate_unitop_name(name: str) -> str:
    if not UNITOP_RE.fullmatch(name):
        raise InvalidName(f"invalid unitop name {name!r}: must match ^[A-Za-z0-9][A-Za-z0-9_-]{{0,127}}$")
    return name


def validate_pattern(pattern: str) -> str:
    """An AMQP topic pattern: dot-separated segments, each `*`, `#` or [A-Za-z0-9_-]+."""
    if pattern == "":
        raise InvalidName("invalid pattern '': must not be empty (use '#' for everything)")
    if len(pattern.encode()) > MAX_ROUTING_KEY:
        raise InvalidName(f"invalid pattern: longer than {MAX_ROUTING_KEY} bytes")
    for i, seg in enumerate(pattern.split(".")):
        if seg not in ("*", "#") and not SEGMENT_RE.fullmatch(seg):
            raise InvalidName(
                f"invalid pattern {pattern!r}: segment {i} {seg!r} must be '*', '#' or one or more of A-Z a-z 0-9 _ -"
            )
    wildcards = count_wildcards(pattern)
    if wildcards > MAX_WILDCARDS:
        raise InvalidName(f"invalid pattern: {wildcards} wildcards ('*' or '#'), at most {MAX_WILDCARDS} wildcards")
    return pattern


def routing_key(topic: str, subject: str | None) -> str:
    """`<topic>.<subject>`, or `<topic>` alone when there is no subject."""
    return f"{topic}.{subject}" if subject else topic


def split_routing_key(key: str) -> tuple[str, str | None]:
    topic, _, subject = key.partition(".")
    return topic, (subject or None)
