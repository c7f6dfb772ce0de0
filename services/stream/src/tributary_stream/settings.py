"""Settings of the stream service (`TRIBUTARY_*` environment variables)."""

from __future__ import annotations

from pydantic import Field

from tributary_common.settings import CommonSettings


class StreamSettings(CommonSettings):
    service_name: str = "tributary-stream"
    http_port: int = 8001

    # Limits: subscriptions per socket, frame size.
    max_connections: int = Field(default=10_000, ge=1)
    # Open websockets and SSE streams of one principal (a token's subject, an API key), beside max_connections.
    max_connections_per_principal: int = Field(default=100, ge=1)
    max_subscriptions_per_connection: int = Field(default=100, ge=1)
    # A client frame above this gets an `error` frame; the connection stays up.
    max_frame_bytes: int = Field(default=64 * 1024, ge=256)
    # Transport limit: a frame above this closes the connection with 1009 (uvicorn's `ws_max_size`).
    ws_max_bytes: int = Field(default=1024 * 1024, ge=1024)
    ws_per_message_deflate: bool = False  # compression is per socket: it would undo "encode once"

    # Inbound websocket frames per connection: a token bucket (rate per second, burst). Frames over it are dropped
    # (one `error` frame says so); a client that keeps sending while throttled is closed with 1008.
    ws_frames_per_s: float = Field(default=100.0, gt=0)
    ws_frames_burst: int = Field(default=200, ge=1)

    # Backpressure: frames queued per connection; above it the client is behind and gets a `gap`.
    send_queue_max: int = Field(default=1000, ge=2)
    # Everything queued for one connection, in bytes (see clients.py): data beyond 3/4 of it waits or gets a
    # `gap`; a reply or gap frame beyond it closes the connection (1008 if its own unread replies filled it).
    max_send_buffer_bytes: int = Field(default=4 * 1024 * 1024, ge=16 * 1024)
    # A client whose queue stays full this long is closed (1013, try again later).
    slow_client_timeout_s: float = Field(default=30.0, gt=0)
    # Live messages buffered per subscription while its history replays; beyond this, a `gap`.
    replay_buffer_max: int = Field(default=10_000, ge=1)
    history_page_size: int = Field(default=500, ge=1, le=1000)
    # History ids remembered for the seam: those with time >= subscribe time minus this margin. Once live, the live
    # copies of those ids are dropped for as long (history can be ahead of a busy instance's live feed).
    seam_margin_s: float = Field(default=60.0, ge=0)
    # A replay goes live no sooner than this long after the bind, and, for events, only once history holds one of
    # the live events buffered since the bind (so that what was published just before the bind is in it).
    replay_settle_s: float = Field(default=1.0, ge=0)
    # An events replay whose history has not reached the live events by then goes live with a `gap`
    # (`history_behind`): the hub's recorder lags this much.
    replay_catchup_max_s: float = Field(default=30.0, gt=0)
    # A `since` id not (yet) in history: asked again this long before it is refused as unknown. A client resumes
    # from the last id it saw live, which a lagging recorder may not have written yet.
    replay_unknown_id_wait_s: float = Field(default=10.0, ge=0)

    sse_keepalive_s: float = Field(default=15.0, gt=0)
    # Broker reconnect backoff (seconds), doubled up to the max.
    reconnect_initial_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=5.0, gt=0)
    # Consumer prefetch of the instance queue.
    prefetch: int = Field(default=1000, ge=1)

    # Broker messages the stream cannot use go to `tributary.dead` (dead_letters.py). An event envelope above this
    # is one (`too_large`; the hub refuses it at publish with the same setting).
    max_event_bytes: int = Field(default=1024 * 1024, ge=1024, le=8 * 1024 * 1024)
    # Letters waiting for the broker's confirm, in bytes; beyond, a letter is counted as lost.
    dead_letter_outbox_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024)
    # At most one log line per reason per interval, saying how many letters it stands for.
    dead_letter_log_interval_s: float = Field(default=60.0, gt=0)
