"""Server settings, built once at start-up and passed down explicitly (no module-level instance)."""

from __future__ import annotations

from pathlib import Path

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TELEMED_", extra="forbid")

    data: Path = Path("./data")
    # Embedded SQLite in ``data`` when empty; ``mongodb://...`` selects MongoDB.
    store: str = ""
    # The public base URL of the FHIR endpoint; derived from the request when empty.
    base_url: str = ""
    max_body_bytes: int = 16 * 1024 * 1024
    max_depth: int = 64
    # Unknown elements in a written resource: rejected (422) when strict, else accepted as sent.
    reject_unknown_elements: bool = True
    default_count: int = 50
    max_count: int = 1000
    max_referrers_listed: int = 50
    # Chains and _has resolve to id sets of at most this many resources (else 400: narrow it).
    max_chain_ids: int = 10_000
    # At most this many resources are added to one search page by _include/_revinclude; what
    # does not fit is named in an OperationOutcome in the Bundle.
    max_includes: int = 1000
    log_level: str = "INFO"

    @field_validator("store")
    @classmethod
    def _store_scheme(cls, v: str) -> str:
        if v and not v.startswith(("mongodb://", "mongodb+srv://", "sqlite:")):
            raise ValueError("store must be empty (embedded SQLite), sqlite:PATH or a mongodb:// URI")
        return v

    @field_validator("max_body_bytes", "max_depth", "default_count", "max_count")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v <= 0:
            raise ValueError("must be positive")
        return v

    def sqlite_path(self) -> Path:
        if self.store.startswith("sqlite:"):
            return Path(self.store.removeprefix("sqlite:"))
        return self.data / "telemed.sqlite3"
