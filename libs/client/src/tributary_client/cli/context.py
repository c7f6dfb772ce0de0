"""The options of one invocation (one command per process)."""

from __future__ import annotations

from ..hub import HubClient


class Ctx:
    def __init__(self, hub: str, stream: str, token: str | None, as_json: bool, debug: bool = False) -> None:
        self.hub = hub
        self.stream = stream
        self.token = token
        self.as_json = as_json
        self.debug = debug

    def client(self) -> HubClient:
        return HubClient(self.hub, self.token)


# The options of this invocation, for `runner.run` to explain a failure.
current: list[Ctx | None] = [None]
