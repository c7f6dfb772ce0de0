"""Where ingest finds the value of a secret reference: a file in `TRIBUTARY_SECRETS_DIR` (a mounted Kubernetes
Secret, one file per key), else the environment variable `TRIBUTARY_SECRET_<NAME>`.

Values are read when a subscription starts, so a rotated Secret applies to the subscriptions that start after it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from tributary_common.secrets import SecretNameError, check_secret_name, secret_env_var

# A credential is short; a bigger file is a mistake (or a device that never ends), not a secret.
MAX_SECRET_BYTES = 64 * 1024


class UnknownSecret(LookupError):
    """A reference that cannot be resolved; the message names the secret and where it was looked for, never a value."""


class SecretStore:
    def __init__(self, directory: Path | None, environ: Mapping[str, str] | None = None) -> None:
        self.directory = directory
        self.environ = os.environ if environ is None else environ

    def resolve(self, name: str) -> str:
        try:
            env = secret_env_var(name)
        except SecretNameError as exc:
            raise UnknownSecret(str(exc)) from None
        if self.directory is not None:
            value = self._from_file(name)
            if value is not None:
                return value
        value = self.environ.get(env)
        if value is not None:
            return value
        where = f"no file {name!r} in TRIBUTARY_SECRETS_DIR and no {env}" if self.directory is not None else f"no {env}"
        raise UnknownSecret(f"secret {name!r} is not set: {where}")

    def _from_file(self, name: str) -> str | None:
        assert self.directory is not None
        check_secret_name(name)
        base = self.directory.resolve()
        try:
            # Kubernetes mounts each key as a symlink into `..data/`: follow it, then insist on staying inside.
            real = (base / name).resolve(strict=True)
        except FileNotFoundError:
            return None
        except (OSError, RuntimeError) as exc:  # a symlink loop, no permission on the folder
            raise UnknownSecret(f"secret {name!r}: cannot read it ({type(exc).__name__})") from None
        if not real.is_relative_to(base):
            raise UnknownSecret(f"secret {name!r} points outside TRIBUTARY_SECRETS_DIR")
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise UnknownSecret(f"secret {name!r}: cannot read it ({type(exc).__name__})") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # a folder, or a FIFO or device that would block or never end
                raise UnknownSecret(f"secret {name!r} is not a regular file")
            data = os.read(fd, MAX_SECRET_BYTES + 1)
        except OSError as exc:
            raise UnknownSecret(f"secret {name!r}: cannot read it ({type(exc).__name__})") from None
        finally:
            os.close(fd)
        if len(data) > MAX_SECRET_BYTES:
            raise UnknownSecret(f"secret {name!r} is over {MAX_SECRET_BYTES} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UnknownSecret(f"secret {name!r} is not UTF-8 text") from None
        # `kubectl create secret --from-file` and editors keep the file's final newline; the value has none.
        if text.endswith("\r\n"):
            return text[:-2]
        return text.removesuffix("\n")
