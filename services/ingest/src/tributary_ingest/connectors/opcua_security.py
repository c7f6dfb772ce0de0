"""Security of an `opcua` session: Basic256Sha256 with the client certificate and private key of the params."""

from __future__ import annotations

import asyncio

from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from .opcua_settings import OpcuaConnection


class BadCertificate(ValueError):
    """A certificate or key in the params that cannot be read."""


async def secure(client: Client, conn: OpcuaConnection) -> None:
    """Set up `client` for the params' Basic256Sha256 (their policy must be it)."""
    assert conn.client_certificate is not None and conn.client_private_key is not None
    cert = _pem_cert(conn.client_certificate, "client_certificate")
    client.application_uri = _application_uri(cert) or client.application_uri
    key = _pem_key(conn.client_private_key)
    mode = getattr(ua.MessageSecurityMode, conn.security_mode)
    server = _pem_cert(conn.server_certificate, "server_certificate") if conn.server_certificate else None
    der = serialization.Encoding.DER  # asyncua reads bytes as DER
    async with asyncio.timeout(conn.timeout_s * 2):
        await client.set_security(
            SecurityPolicyBasic256Sha256,
            certificate=cert.public_bytes(der),
            private_key=key.private_bytes(der, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
            server_certificate=None if server is None else server.public_bytes(der),
            mode=mode,
        )


def _pem_cert(pem: str, field: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise BadCertificate(f"{field} is not a PEM certificate ({exc})") from None


def _pem_key(pem: str) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:  # the message never quotes the key
        raise BadCertificate(
            f"client_private_key is not an unencrypted PEM private key ({type(exc).__name__})"
        ) from None


def _application_uri(cert: x509.Certificate) -> str | None:
    """The URI in the certificate's subjectAltName: the client's application URI must be it."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None
