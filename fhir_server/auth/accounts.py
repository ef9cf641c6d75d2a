"""Registered clients and user accounts of the local authorization server, kept in AuthState
(kinds ``client`` and ``user``). Passwords and client secrets are stored only as scrypt hashes.

A client is ``public`` (no secret: PKCE only), ``confidential-symmetric`` (a generated secret:
``client_secret_basic`` / ``client_secret_post``) or ``confidential-asymmetric`` (its public
keys, a JWKS by value or a ``jwks_url``: ``private_key_jwt``, SMART Backend Services). A user is
a username, a password and the FHIR resource they are (``fhirUser``: ``Practitioner/1``,
``Patient/2``, ...).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from urllib.parse import urlsplit

from jwcrypto import jwk

from fhir_server.auth import scopes
from fhir_server.auth.state import AuthState

TYPES = ("public", "confidential-symmetric", "confidential-asymmetric")
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
USER_TYPES = ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson", "Person")
OTHER_SCOPES = frozenset({"openid", "fhirUser", "profile", "launch", "launch/patient", "launch/encounter",
                          "offline_access", "online_access"})
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_USERNAME = re.compile(r"^[A-Za-z0-9_.@+\-]{1,128}$")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")

# scrypt cost: 16 MiB and ~50 ms per hash on one core.
_N, _R, _P = 2**14, 8, 1


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, hashed: str | None) -> bool:
    """Whether ``secret`` matches ``hashed``; costs one scrypt even without a hash (no timing hint)."""
    try:
        _, n, r, p, salt, expected = (hashed or "").split("$")
        n, r, p, salt, expected = int(n), int(r), int(p), _unb64(salt), _unb64(expected)
    except ValueError:
        n, r, p, salt, expected = _N, _R, _P, b"\0" * 16, b""
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return bool(expected) and hmac.compare_digest(digest, expected)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# clients

def new_client(spec: dict) -> tuple[dict, str | None]:
    """A client record from a registration (admin API body or CLI options), and the generated
    secret of a symmetric client (shown once). ValueError names what is wrong."""
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("name is required")
    type = spec.get("type", "public")
    if type not in TYPES:
        raise ValueError(f"type must be one of {', '.join(TYPES)}")
    client_id = spec.get("client_id") or uuid.uuid4().hex
    if not isinstance(client_id, str) or not _CLIENT_ID.match(client_id):
        raise ValueError("client_id may hold letters, digits, '_', '.', '-' (at most 128)")
    redirect_uris = spec.get("redirect_uris") or []
    if not isinstance(redirect_uris, list) or not all(isinstance(u, str) and _absolute(u) for u in redirect_uris):
        raise ValueError("redirect_uris must be a list of absolute URIs without a fragment")
    scope = spec.get("scope")
    if not isinstance(scope, str) or not scope.split():
        raise ValueError("scope (the scopes the client may be granted) is required")
    unknown = [s for s in scope.split() if scopes.parse_grant(s) is None and s not in OTHER_SCOPES]
    if unknown:
        raise ValueError(f"unknown scopes: {' '.join(unknown)}")
    record = {"client_id": client_id, "name": name.strip(), "type": type, "redirect_uris": redirect_uris,
              "scope": scopes.parse(scope).text, "created": int(time.time())}
    record["grant_types"] = _grant_types(spec.get("grant_types"), type, redirect_uris)
    secret = None
    if type == "confidential-symmetric":
        secret = secrets.token_urlsafe(32)
        record["secret_hash"] = hash_secret(secret)
    if type == "confidential-asymmetric":
        record.update(_keys(spec.get("jwks"), spec.get("jwks_url")))
    elif spec.get("jwks") or spec.get("jwks_url"):
        raise ValueError("jwks / jwks_url belong to confidential-asymmetric clients")
    return record, secret


def _absolute(uri: str) -> bool:
    parts = urlsplit(uri)
    return bool(parts.scheme) and bool(parts.netloc or parts.path) and not parts.fragment and "#" not in uri


def _grant_types(given, type: str, redirect_uris: list[str]) -> list[str]:
    if given is None:
        given = ["authorization_code", "refresh_token"] if redirect_uris else []
        if type == "confidential-asymmetric":
            given.append("client_credentials")
    if not isinstance(given, list) or not given or any(g not in GRANT_TYPES for g in given):
        raise ValueError(f"grant_types must be a non-empty list of {', '.join(GRANT_TYPES)}"
                         + ("" if redirect_uris else " (a client without redirect_uris has none by default)"))
    if "authorization_code" in given and not redirect_uris:
        raise ValueError("the authorization_code grant needs at least one redirect_uri")
    if "client_credentials" in given and type == "public":
        raise ValueError("a public client cannot use client_credentials")
    return list(dict.fromkeys(given))


def _keys(jwks, jwks_url) -> dict:
    if bool(jwks) == bool(jwks_url):
        raise ValueError("a confidential-asymmetric client needs exactly one of jwks (by value) or jwks_url")
    if jwks_url:
        parts = urlsplit(jwks_url) if isinstance(jwks_url, str) else None
        if parts is None or parts.scheme not in ("https", "http") or not parts.netloc:
            raise ValueError("jwks_url must be an https URL")
        if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("jwks_url must be https (http only on the loopback interface)")
        return {"jwks_url": jwks_url}
    try:
        keyset = jwk.JWKSet.from_json(json.dumps(jwks) if not isinstance(jwks, str) else jwks)
    except Exception:  # jwcrypto raises several types for malformed key sets
        raise ValueError("jwks is not a valid JWK Set") from None
    keys = [json.loads(k.export_public()) for k in keyset["keys"]]
    if not keys or any(not k.get("kid") for k in keys):
        raise ValueError("jwks must hold at least one key, each with a kid")
    return {"jwks": {"keys": keys}}


def public_view(client: dict) -> dict:
    """A client record as the admin API shows it: everything but the secret hash."""
    return {k: v for k, v in client.items() if k != "secret_hash"}


async def save_client(state: AuthState, record: dict) -> bool:
    """Register a client; False when the client_id is taken."""
    return await state.add("client", record["client_id"], record)


async def get_client(state: AuthState, client_id: str) -> dict | None:
    return await state.get("client", client_id) if client_id else None


async def list_clients(state: AuthState) -> list[dict]:
    return await state.list("client")


async def remove_client(state: AuthState, client_id: str) -> bool:
    return await state.delete("client", client_id)


# users

def new_user(username, password, fhir_user) -> dict:
    if not isinstance(username, str) or not _USERNAME.match(username):
        raise ValueError("username may hold letters, digits and _.@+- (at most 128)")
    if not isinstance(password, str) or len(password) < 8:
        raise ValueError("password must have at least 8 characters")
    if not isinstance(fhir_user, str) or "/" not in fhir_user:
        raise ValueError("fhirUser must be a reference such as Practitioner/1 or Patient/2")
    type, _, id = fhir_user.partition("/")
    if type not in USER_TYPES or not _FHIR_ID.match(id):
        raise ValueError(f"fhirUser must be one of {', '.join(USER_TYPES)} with an id, e.g. Practitioner/1")
    return {"username": username, "id": uuid.uuid4().hex, "fhirUser": fhir_user,
            "password_hash": hash_secret(password), "created": int(time.time())}


def user_view(user: dict) -> dict:
    return {k: v for k, v in user.items() if k != "password_hash"}


async def save_user(state: AuthState, record: dict) -> bool:
    """Create a user account; False when the username is taken."""
    return await state.add("user", record["username"], record)


async def list_users(state: AuthState) -> list[dict]:
    return await state.list("user")


async def remove_user(state: AuthState, username: str) -> bool:
    return await state.delete("user", username)


async def check_password(state: AuthState, username: str, password: str) -> dict | None:
    """The user when the password is right (the same work is done for unknown usernames)."""
    user = await state.get("user", username) if username else None
    ok = await asyncio.to_thread(verify_secret, password, user.get("password_hash") if user else None)
    return user if ok and user else None
