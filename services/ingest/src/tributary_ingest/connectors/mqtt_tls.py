"""TLS of an `mqtt` connection: the CA and client certificate from the params or the operator's TLS folder.

The broker's certificate is verified against `server_name` (default `host`), which is also sent as SNI, since the
connection itself goes to the address the egress policy (`TRIBUTARY_HTTP_ALLOW`) checked, never to a second
resolution.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from ..sdk import Refused
from .mqtt_settings import MAX_PEM, MqttConnection


class BadCertificate(ValueError):
    """A certificate or key of the params that cannot be read."""


class _NamedContext(ssl.SSLContext):
    """Verifies the broker as `server_name` (and sends it as SNI) while paho connects to the checked address."""

    server_name: str

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> ssl.SSLSocket:  # type: ignore[override]
        kwargs["server_hostname"] = self.server_name
        return super().wrap_socket(sock, *args, **kwargs)


def tls_context(conn: MqttConnection, tls_dir: Path | None) -> ssl.SSLContext:
    ctx = _NamedContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the certificate and the name
    ctx.server_name = conn.server_name or conn.host
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ca = conn.ca_certificate or (_file(tls_dir, conn.ca_file, "ca_file") if conn.ca_file else None)
    try:
        if ca is None:
            ctx.load_default_certs()
        else:
            ctx.load_verify_locations(cadata=ca)
    except (ssl.SSLError, ValueError) as exc:
        raise BadCertificate(f"{'ca_certificate' if conn.ca_certificate else 'ca_file'} is not PEM ({exc})") from None
    if conn.client_private_key is not None:
        cert = conn.client_certificate or _file(
            tls_dir, cast(str, conn.client_certificate_file), "client_certificate_file"
        )
        try:
            with _private_file(cert) as cert_path, _private_file(conn.client_private_key) as key_path:
                ctx.load_cert_chain(cert_path, key_path)
        except (ssl.SSLError, ValueError) as exc:  # the message never quotes the key
            raise BadCertificate(
                f"the client certificate and client_private_key are not a PEM pair ({type(exc).__name__})"
            ) from None
    return ctx


def _file(tls_dir: Path | None, name: str, what: str) -> str:
    """A PEM file under the operator's TLS folder, never outside it."""
    if tls_dir is None:
        raise Refused(f"{what} needs TRIBUTARY_MQTT_TLS_DIR to be set")
    root = tls_dir.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise Refused(f"{what} {name!r} is outside TRIBUTARY_MQTT_TLS_DIR")
    if any(part.startswith(".") for part in path.relative_to(root).parts):
        raise Refused(f"{what} {name!r} is hidden (a dot file or folder): never read")
    try:
        with path.open("rb") as f:
            data = f.read(MAX_PEM + 1)
    except OSError as exc:
        raise BadCertificate(f"{what} {name!r} cannot be read ({exc.strerror})") from None
    if len(data) > MAX_PEM:
        raise BadCertificate(f"{what} {name!r} is over {MAX_PEM} bytes")
    return data.decode("ascii", errors="replace")


@contextlib.contextmanager
def _private_file(text: str) -> Iterator[str]:
    """`text` as a file path for `ssl` (which reads only files): a memory file where there are, else a 0600 temporary
    file removed at once."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("tributary-tls", 0)
        try:
            os.write(fd, text.encode())
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as f:
        f.write(text)
        f.flush()
        yield f.name
