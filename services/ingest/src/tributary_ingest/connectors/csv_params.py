"""`csv` params: the folder (absolute, no '.' or '..'), the file pattern and the columns to read, or to list."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tributary_common.events import UtcTime

# Absolute, no "." or ".." segment (the hub refuses those with a 422; the message of the validator below is clearer).
FOLDER_PATTERN = r"^/([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+|/)*$"


class CsvParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    folder: str = Field(
        min_length=1,
        max_length=4096,
        pattern=FOLDER_PATTERN,
        description="Absolute path of the folder holding the CSV files (under the roots the operator allows)",
    )
    pattern: str = Field(
        default="*.csv", min_length=1, max_length=255, description="Glob of the files to read, in name order"
    )
    value_column: str = Field(min_length=1, description="Header of the column to read")
    time_column: str = Field(default="time", min_length=1, description="Header of the RFC 3339 or Unix-seconds time")
    since: UtcTime | None = Field(default=None, description="Skip existing rows before this time (default: all)")
    poll_interval_s: float = Field(default=1.0, ge=0.05, le=3600, description="How often to look for new rows")
    delimiter: str = Field(default=",", min_length=1, max_length=1)

    @field_validator("folder", mode="before")  # before the pattern, for a message a person can read
    @classmethod
    def _folder(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        if not v.startswith("/"):
            raise ValueError(f"folder {v!r} must be an absolute path")
        if any(part in (".", "..") for part in v.split("/")):
            raise ValueError(f"folder {v!r} must not contain '.' or '..' segments")
        if "\0" in v:
            raise ValueError("folder must not contain NUL")
        return v

    @field_validator("since")
    @classmethod
    def _since(cls, v: datetime | None) -> datetime | None:
        # Compared with each row's (aware) time: a naive `since` raised TypeError on the first row, failing the read
        # at the same row forever. Naive times are refused as everywhere else (`parse_time`).
        if v is None:
            return None
        if v.tzinfo is None or v.utcoffset() is None:
            raise ValueError("since needs a UTC offset ('Z' or '+hh:mm')")
        try:
            return v.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00:00+01:00 lies before year 1 in UTC
            raise ValueError("since is outside the years 1-9999 in UTC") from None

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        if "/" in v or "\\" in v or "\0" in v:
            raise ValueError(f"pattern {v!r} must match file names in the folder itself (no '/')")
        if v.startswith(".") or "**" in v:
            raise ValueError(f"pattern {v!r}: hidden files are never read, and '**' is not allowed")
        return v


class CsvBrowse(BaseModel):
    """Where to list: `folder` (absolute, under the roots; none: the roots themselves) and how to read headers."""

    model_config = ConfigDict(extra="forbid")

    folder: str | None = Field(default=None, min_length=1, max_length=4096, pattern=FOLDER_PATTERN)
    pattern: str = Field(default="*.csv", min_length=1, max_length=255)
    time_column: str = Field(default="time", min_length=1)
    delimiter: str = Field(default=",", min_length=1, max_length=1)

    _folder = field_validator("folder", mode="before")(CsvParams._folder.__func__)  # type: ignore[attr-defined]
    _pattern = field_validator("pattern")(CsvParams._pattern.__func__)  # type: ignore[attr-defined]
