"""The sources this process serves: connector classes registered under the entry-point group `tributary.sources`."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import Any

from tributary_common.names import SEGMENT_RE

from .sdk import Connector
from .settings import IngestSettings

GROUP = "tributary.sources"
log = logging.getLogger(__name__)


class RegistryError(RuntimeError):
    pass


def load_sources(enabled: list[str] | None = None) -> dict[str, type[Connector[Any]]]:
    """Every registered source (or only `enabled`); a source that fails to load is logged and skipped."""
    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    if enabled:
        unknown = sorted(set(enabled) - set(found))
        if unknown:
            raise RegistryError(f"enabled sources {unknown} are not registered under {GROUP!r}; known: {sorted(found)}")
    sources: dict[str, type[Connector[Any]]] = {}
    for name in sorted(found):
        if enabled and name not in enabled:
            continue
        if not SEGMENT_RE.fullmatch(name):
            log.error("source name %r is not one routing-key segment ([A-Za-z0-9_-]+); skipped", name)
            continue
        try:
            cls = found[name].load()
        except Exception:  # a broken third-party package must not stop the others
            log.exception("source %s (%s) failed to load; skipped", name, found[name].value)
            continue
        if not (isinstance(cls, type) and issubclass(cls, Connector) and hasattr(cls, "params_model")):
            log.error(
                "source %s (%s) is not a Connector subclass with a params_model; skipped", name, found[name].value
            )
            continue
        sources[name] = cls
    return sources


def configure_sources(
    sources: dict[str, type[Connector[Any]]], settings: IngestSettings
) -> dict[str, type[Connector[Any]]]:
    """Each source as served under `settings` (`Connector.configure`); one that opts out or fails is left out."""
    out: dict[str, type[Connector[Any]]] = {}
    for name, cls in sources.items():
        try:
            configured = cls.configure(settings)
        except Exception:  # a broken third-party connector must not stop the others
            log.exception("source %s failed to configure; skipped", name)
            continue
        if configured is None:
            log.info("source %s is not served under these settings", name)
            continue
        out[name] = configured
    return out
