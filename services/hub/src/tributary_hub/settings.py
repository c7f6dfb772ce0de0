"""`HubSettings`: every knob of the hub, from `TRIBUTARY_*` environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from tributary_common.settings import CommonSettings, MongoSettings

from .partitions import ID_SHARD_CHOICES, Layout


class HubSettings(CommonSettings, MongoSettings):
    service_name: str = "tributary-hub"
    http_port: int = 8000

    # `serve` runs the recorders in-process unless this is false (then run `tributary-hub recorder`).
    recorders_enabled: bool = True
    # `serve` sends demand heartbeats for `record: true` unitops unless this is false.
    demand_enabled: bool = True

    # Publishing: confirmed publishes in flight at once across all requests of this process.
    publish_window: int = Field(default=500, ge=1, le=100_000)
    publish_timeout_s: float = Field(default=10.0, gt=0)
    # RPC requests (the stream's history pages, API key checks, ...) handled at once; also the queue's prefetch.
    rpc_concurrency: int = Field(default=16, ge=1, le=1024)

    # Limits: each a precise 413 or 422.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)  # one event's request body
    max_batch_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)  # a batch request body
    max_batch_events: int = Field(default=10_000, ge=1)
    # One event's encoded envelope (what the recorder stores): well under the database's 16 MB document limit,
    # since numbers can re-encode several times longer than the client sent them.
    max_event_bytes: int = Field(default=1024 * 1024, ge=1024, le=8 * 1024 * 1024)
    max_schema_bytes: int = Field(default=64 * 1024, ge=256)
    max_schema_depth: int = Field(default=32, ge=2)

    # Recorders: a write holds up to batch_size messages or waits at most batch_max_delay_ms for more. A samples
    # batch costs a few commands per sid in it whatever its samples (bench/samples_many_sids.py): with one sample a
    # message (1 Hz sids), 1,000 drained 300 sids' messages 1.37x as fast as 500 on FerretDB.
    recorder_batch_size: int = Field(default=1000, ge=1, le=10_000)
    # ...and ends once its messages' bodies reach this many MiB, so that bulk messages (a thousand samples each)
    # keep batches near their size before (~330 such messages, not a million samples merged in one write).
    recorder_batch_mb: int = Field(default=16, ge=1, le=1024)
    # On FerretDB's layouts, the samples recorder stages each batch as a document or a few and acks it, and a merge
    # loop writes what is staged into the buckets, many batches at once (`sample_staging`): a batch's cost per sid
    # is paid once a merge. Off: each batch is written into the buckets before its ack. MongoDB writes directly.
    sample_staging: bool = True
    recorder_batch_max_delay_ms: int = Field(default=100, ge=1, le=60_000)
    # Unacked messages a recorder holds: its memory is up to prefetch × the largest message (AMQP counts
    # messages, not bytes), so the bound keeps a typo from asking for unbounded memory.
    recorder_prefetch: int = Field(default=2000, ge=1, le=20_000)
    # What the samples recorder and the dead-letter recorder may each hold of unacked messages, in MiB: as for events
    # (`recorder_event_memory_mb`), their prefetch is lowered until that many of the largest message each may get
    # fit (a sample batch: `SAMPLE_BATCH_MAX_BYTES`; a dead letter: that or `max_event_bytes`).
    recorder_memory_mb: int = Field(default=2048, ge=1, le=1024 * 1024)
    # The events recorder's own (larger: each batch costs FerretDB a command per topic and id shard, ~2.5 ms of
    # its CPU whatever the size, so events per topic per batch decide its cost); prefetch twice the batch, so the
    # next batch arrives while one is written.
    recorder_event_batch_size: int = Field(default=2000, ge=1, le=10_000)
    recorder_event_prefetch: int = Field(default=4000, ge=1, le=20_000)
    # What the events recorder may hold of unacked message bodies, in MiB: its prefetch (and batch, in proportion)
    # is lowered until that many events of `max_event_bytes` each fit. Clients choose the events' size, and the
    # broker counts messages, not bytes, so a burst of the largest events allowed must not outgrow the process.
    # The default keeps the window above for 1 MiB events; a container sets it well under its memory limit.
    recorder_event_memory_mb: int = Field(default=4096, ge=1, le=1024 * 1024)
    # What receives the events recorder's deliveries: pika in a thread of its own (1.7x the events per second, see
    # pika_receiver.py), or the aio-pika consumer the other recorders use.
    recorder_event_receiver: Literal["pika", "aio-pika"] = "pika"
    # Backoff while the database refuses writes: doubled from min to max, retried until it works.
    recorder_retry_min_s: float = Field(default=0.2, gt=0)
    recorder_retry_max_s: float = Field(default=5.0, gt=0)
    # How long a topic's retention is remembered by a recorder before it is read again.
    recorder_topic_cache_s: float = Field(default=10.0, ge=0)
    # Samples kept this many days (None: forever), dropped a whole day's partition at a time; their hourly and
    # per-minute summaries kept this many (None: as long as the samples; never less).
    samples_retention_days: float | None = Field(default=None, gt=0)
    samples_summary_retention_days: float | None = Field(default=None, gt=0)
    # A sample's string value or quality over this (UTF-8 bytes) is dead-lettered `too_large` with its batch.
    sample_value_max_bytes: int = Field(default=1024 * 1024, ge=64, le=8 * 1024 * 1024)
    retention_sweep_interval_s: float = Field(default=60.0, gt=0)
    # Dead letters: bodies kept whole up to this size (larger: size, sha256 and a preview); recorder and
    # dead-letter logs at most one line per reason per interval, with a count.
    dead_letter_body_max_bytes: int = Field(default=1024 * 1024, ge=4096, le=8 * 1024 * 1024)
    dead_letter_log_interval_s: float = Field(default=60.0, gt=0)

    # Caching: topic metadata in Memcached (invalidated on change) for this long at most.
    topic_cache_ttl_s: float = Field(default=300.0, ge=0)
    # ... and remembered in-process this long (a schema change made through another hub instance is seen by
    # this one within it; through this one, at once).
    topic_local_ttl_s: float = Field(default=1.0, ge=0)

    # The web console (/console/): where browsers reach the stream (its /ws), e.g. wss://stream.example.com.
    # Unset: the console offers no live tail. Strict: its origin goes into the console's CSP header.
    console_stream_url: str | None = Field(
        default=None, max_length=2048, pattern=r"^(wss?|https?)://[A-Za-z0-9.\-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$"
    )

    # Where events and samples are stored: `packed` (collections per topic and day, events in compressed blocks;
    # samples as `partitioned`), `partitioned` (the same collections, one document per event; per sid and
    # day/month for samples: FerretDB scans whole collections) or `indexed` (one collection per kind with compound
    # indexes: MongoDB). See partitions.py, event_blocks.py and sample_partitions.py.
    storage_layout: Layout = Layout.PACKED
    # The id directory shards of each topic generation created from now on (partitions.py; fixed for its life):
    # fewer, fewer commands per recorder batch; more, shorter scans per read by id on FerretDB. Not for `indexed`.
    event_id_shards: int = 2

    @field_validator("event_id_shards")
    @classmethod
    def _one_of_the_shard_choices(cls, value: int) -> int:
        if value not in ID_SHARD_CHOICES:
            raise ValueError(f"must be one of {', '.join(map(str, ID_SHARD_CHOICES))}")
        return value

    # History
    history_default_limit: int = Field(default=100, ge=1, le=1000)
    history_max_limit: int = Field(default=1000, ge=1)
    export_chunk_rows: int = Field(default=500, ge=1)
    latest_max_subjects: int = Field(default=1000, ge=1)
    # Aligned samples: at most this many points per request, and (aligned and interpolated reads) at most this many
    # item values, points × items: 100,000 points of 1,000 items were 10⁸ values, minutes of CPU for one request.
    aligned_max_points: int = Field(default=100_000, ge=1)
    grid_max_values: int = Field(default=10_000_000, ge=1)
    # Historian reads: intervals per plot or summary request, times in a `times=` list, rows of `last=N`, and how
    # many item values an interpolated read computes before writing them (its memory bound).
    historian_max_intervals: int = Field(default=10_000, ge=1)
    historian_max_times: int = Field(default=250, ge=1)
    historian_max_last_rows: int = Field(default=100_000, ge=1)
    historian_block_cells: int = Field(default=50_000, ge=1)
    mongodb_timeout_ms: int = Field(default=5000, ge=100)
    # Start-up waits this long for the database before giving up.
    startup_timeout_s: float = Field(default=60.0, gt=0)
