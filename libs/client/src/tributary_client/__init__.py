"""Async Python client for Tributary: the hub's HTTP API, live subscriptions over websockets and SSE."""

from .errors import TributaryError
from .hub import HubClient
from .stream import StreamClient, Subscription

__all__ = ["HubClient", "StreamClient", "Subscription", "TributaryError"]
