"""Settings read at start-up: a bad value ends the process with one line naming the variable and what is wrong,
exit code 2, instead of a traceback (or, worse, a process that starts and refuses every request)."""

from __future__ import annotations

import logging
import sys
from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsError

S = TypeVar("S", bound=BaseSettings)
log = logging.getLogger(__name__)


def settings_problems(exc: ValidationError, prefix: str = "TRIBUTARY_") -> str:
    """`TRIBUTARY_CLAIM_MAP: at roles.admin.scopes.0: Value error, unknown scope 'adm'`; one per problem."""
    lines = []
    for error in exc.errors()[:10]:
        loc = [str(p) for p in error.get("loc", ())]
        name = (prefix + loc[0]).upper() if loc else "settings"
        where = ".".join(p for p in loc[1:] if p != "root")
        lines.append(f"{name}: {'at ' + where + ': ' if where else ''}{error.get('msg', '')}")
    return "; ".join(lines)


def load_settings(cls: type[S]) -> S:
    """`cls()` from the environment, or exit 2 with the reason on stderr (logging is not set up yet)."""
    try:
        return cls()
    except ValidationError as exc:
        reason = settings_problems(exc)
    except SettingsError as exc:  # a complex setting that is not JSON at all
        cause = exc.__cause__
        reason = f"{exc}{': ' + str(cause) if cause else ''}"
    print(f"refusing to start: invalid settings: {reason}", file=sys.stderr)
    raise SystemExit(2)
