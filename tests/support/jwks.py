"""A JWKS endpoint on loopback serving RS256 keys the test controls, and tokens signed with them: for tests of
identity-provider tokens (rotation, outages, claim shapes of Keycloak and Azure AD)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

AUDIENCE = "tributary"  # what `Jwks.token` puts in `aud`, and `jwks_env` asks of tokens


class Jwks:
    """A JWKS endpoint on loopback whose keys and behaviour (`ok`, `hang`, `drop`) the test changes."""

    def __init__(self, *, declare_alg: bool = True) -> None:
        self.declare_alg = declare_alg  # False: JWKs without `alg`, as Azure AD publishes them
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.served: list[str] = []
        self.mode = "ok"
        self.hits = 0
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                jwks.hits += 1
                if jwks.mode == "hang":
                    time.sleep(30)
                    return
                if jwks.mode == "drop":
                    self.close_connection = True
                    return
                body = json.dumps({"keys": [jwks.jwk(kid) for kid in jwks.served]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, kid: str, *, serve: bool = True) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if serve:
            self.served.append(kid)

    def jwk(self, kid: str) -> dict[str, Any]:
        key: dict[str, Any] = RSAAlgorithm.to_jwk(self.keys[kid].public_key(), as_dict=True)
        return {**key, "kid": kid, "use": "sig", **({"alg": "RS256"} if self.declare_alg else {})}

    def token(self, kid: str, key_of: str | None = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"sub": "oidc-user", "scope": "admin", "aud": AUDIENCE, "iat": now, "exp": now + 600, **claims}
        return jwt.encode(body, self.keys[key_of or kid], algorithm="RS256", headers={"kid": kid})

    def signed(self, kid: str, claims: dict[str, Any]) -> str:
        """A token with exactly `claims` (no defaults added)."""
        return jwt.encode(claims, self.keys[kid], algorithm="RS256", headers={"kid": kid})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def serving(kid: str, *, declare_alg: bool = True) -> Iterator[Jwks]:
    """A JWKS endpoint serving one key, `kid`, closed afterwards."""
    server = Jwks(declare_alg=declare_alg)
    server.add(kid)
    try:
        yield server
    finally:
        server.close()


def jwks_env(jwks: Jwks, audience: str = AUDIENCE) -> dict[str, str]:
    """A service's settings for this identity provider (the services refuse one without an audience)."""
    return {"TRIBUTARY_JWKS_URL": jwks.url, "TRIBUTARY_JWT_ALGORITHMS": '["RS256"]', "TRIBUTARY_JWT_AUDIENCE": audience}
