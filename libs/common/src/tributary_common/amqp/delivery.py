"""What a consumer reads of a delivered message, whichever client received it.

aio-pika's `AbstractIncomingMessage` has these attributes; the hub's pika receiver (`tributary_hub.pika_receiver`)
builds objects that have them too. Code that only reads a message (the recorders' conversions, dead letters) takes
a `Delivery`, so it does not depend on the client that received it; acknowledging stays with the receiver.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class Delivery(Protocol):
    @property
    def body(self) -> bytes: ...

    @property
    def headers(self) -> Mapping[str, Any]: ...

    @property
    def message_id(self) -> str | None: ...

    @property
    def correlation_id(self) -> str | None: ...

    @property
    def content_type(self) -> str | None: ...

    @property
    def content_encoding(self) -> str | None: ...

    @property
    def exchange(self) -> str | None: ...

    @property
    def routing_key(self) -> str | None: ...
