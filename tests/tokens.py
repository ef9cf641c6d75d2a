"""Access tokens for tests, minted by the app's own local authority."""

from __future__ import annotations

from pathlib import Path

from fhir_server.auth import tokens
from fhir_server.auth.keys import KeyRing
from fhir_server.settings import Settings

BASE = "http://testserver/fhir"


def token(app, scope: str = "system/*.*", base: str = BASE, lifetime: int = 3600, **claims) -> str:
    """A token from ``app``'s authority with ``scope`` and extra claims (fhirUser, patient, ...)."""
    svc = app.state.services
    full = {"iss": (svc.settings.issuer or base).rstrip("/"), "aud": base, "sub": claims.pop("sub", "test"),
            "client_id": claims.pop("client_id", "test-client"), "scope": scope, **claims}
    return tokens.mint(svc.keys, full, lifetime)[0]


def auth(app, scope: str = "system/*.*", base: str = BASE, **claims) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(app, scope, base, **claims)}"}


def for_data_dir(data: Path, base: str, scope: str = "system/*.*") -> dict[str, str]:
    """Headers for a server process started on ``data`` (its keys live in ``data/keys``)."""
    settings = Settings(data=data)
    return {"Authorization": f"Bearer {tokens.system_token(KeyRing(settings.keys_path()), settings, base, scope)}"}
