"""The local authority's signing keys: the newest signs, every kept key verifies.

Keys are private JWKs (RSA, RS256) in ``<data>/keys/*.jwk.json`` or, when ``TELEMED_SIGNING_KEYS``
holds a JWK Set, in the environment. Rotation (``telemed keys rotate``) writes a new key and
keeps the one before it, so tokens signed before the rotation stay valid until they expire;
older keys are removed. Another process's rotation is picked up when a token names a key
this process has not loaded yet (the folder is listed again; loaded only when it changed), and
the signing key follows within ``_CHECK_EVERY`` seconds.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from jwcrypto import jwk

ALG = "RS256"  # SMART requires RS256 for id_tokens; one algorithm for every token we sign
KEEP = 2  # the active key and the one before it
_CHECK_EVERY = 5.0  # seconds between looks for a newer signing key (a rotation by another process)


class KeyRing:
    def __init__(self, folder: Path, env_jwks: str | None = None):
        self.folder = folder
        self.env_jwks = env_jwks if env_jwks is not None else os.environ.get("TELEMED_SIGNING_KEYS")
        self._keys: list[jwk.JWK] = []  # oldest first
        self._checked_at = 0.0
        self._seen: tuple[str, ...] = ()
        self.load()

    def load(self) -> None:
        if self.env_jwks:
            keys = [jwk.JWK(**k) for k in json.loads(self.env_jwks)["keys"]]
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            files = sorted(self.folder.glob("*.jwk.json"))
            if not files:
                files = [self._write_new()]
            keys = [jwk.JWK.from_json(f.read_text()) for f in files]
            self._seen = tuple(f.name for f in files)
        if not keys:
            raise ValueError("no signing key configured")
        self._keys = keys
        self._checked_at = time.monotonic()

    def _write_new(self) -> Path:
        key = jwk.JWK.generate(kty="RSA", size=2048, use="sig", alg=ALG)
        now = time.time_ns()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 1_000_000_000)) + f"{now % 1_000_000_000:09d}"
        key_id = f"{stamp[:15]}-{key.thumbprint()[:8]}"
        key = jwk.JWK(**{**json.loads(key.export_private()), "kid": key_id})
        path = self.folder / f"{stamp}.jwk.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(key.export_private())
        os.chmod(tmp, 0o600)
        tmp.replace(path)
        return path

    def rotate(self) -> str:
        """Make a new active key, keep the previous one, delete older ones; the new key id."""
        if self.env_jwks:
            raise ValueError("keys come from TELEMED_SIGNING_KEYS; rotate them there")
        self._write_new()
        files = sorted(self.folder.glob("*.jwk.json"))
        for old in files[:-KEEP]:
            old.unlink()
        self.load()
        return self.active.get("kid")

    @property
    def active(self) -> jwk.JWK:
        """The signing key: the newest, also after another process (``telemed keys rotate``) rotated."""
        if not self.env_jwks and time.monotonic() - self._checked_at > _CHECK_EVERY:
            self._checked_at = time.monotonic()
            if self._changed():
                self.load()
        return self._keys[-1]

    def find(self, kid: str | None) -> jwk.JWK | None:
        for key in self._keys:
            if key.get("kid") == kid:
                return key
        if kid and self._changed():  # another process rotated: load the folder again
            self.load()
            return next((k for k in self._keys if k.get("kid") == kid), None)
        return None

    def _changed(self) -> bool:
        return not self.env_jwks and tuple(sorted(f.name for f in self.folder.glob("*.jwk.json"))) != self._seen

    def jwks(self) -> dict:
        """The public JWK Set (served at the authority's jwks_uri)."""
        return {"keys": [json.loads(k.export_public()) | {"use": "sig", "alg": ALG} for k in self._keys]}
