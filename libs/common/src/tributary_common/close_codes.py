"""Websocket close codes the stream uses (RFC 6455 registry), named for what they tell the client.

Shared so that the client library can tell "give up" (policy) from "reconnect" (restart, try again later).
"""

from __future__ import annotations

NORMAL = 1000
# Bad or ended credentials, a client that floods frames or does not read the replies to its own frames.
POLICY_VIOLATION = 1008
# The server is restarting: reconnect (to another instance).
SERVICE_RESTART = 1012
# Connection limits, a slow reader of data, credentials that cannot be checked now: retry later.
TRY_AGAIN_LATER = 1013
