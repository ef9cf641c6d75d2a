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

    # The local authorization server. ``issuer`` is its issuer URL and the ``iss`` of its tokens;
    # empty: the FHIR base URL (``base_url``, else derived from the request).
    issuer: str = ""
    access_token_seconds: int = 900
    refresh_token_seconds: int = 30 * 24 * 3600
    authorization_code_seconds: int = 60
    # Token endpoint requests per minute per client and IP address (brute-force protection).
    token_rate_limit: int = 30
    # An external OpenID Connect provider (the national identity system, RU-7) whose access
    # tokens are accepted: its issuer, the audience its tokens carry for us, its JWKS URL, and
    # the claim holding the user's SNILS (matched to a Practitioner or Patient identifier).
    external_issuer: str = ""
    external_audience: str = ""
    external_jwks_url: str = ""
    external_snils_claim: str = "snils"
    # Scopes of a matched user whose external token carries no SMART scopes.
    external_practitioner_scope: str = "user/*.cruds"
    external_patient_scope: str = "patient/*.rs"
    # DICOMweb proxy (/dicomweb, package dicomweb/) to the PACS: the PACS's DICOMweb root URL
    # (e.g. http://pacs:8042/dicom-web; empty: the /dicomweb routes answer 503), the proxy's
    # HTTP basic credentials there, seconds to wait for a connection or for the next bytes of
    # an answer (502/504 after that), the bytes of study metadata kept for ETag revalidation
    # and how long an entry is trusted, the largest STOW-RS body accepted, and whether streamed
    # answers may take the kernel splice fast path (dicomweb/splice.py; off: copied through
    # Python, to compare, or should a platform misbehave), with how many threads moving answers
    # at once (more go through Python meanwhile), and the seconds a caller may take no bytes
    # of a streamed answer before its connection is closed.
    dicomweb_upstream: str = ""
    dicomweb_username: str = ""
    dicomweb_password: str = ""
    dicomweb_timeout: float = 30.0
    dicomweb_cache_bytes: int = 64 * 1024 * 1024
    dicomweb_cache_seconds: float = 300.0
    dicomweb_max_stow_bytes: int = 4 * 1024 * 1024 * 1024
    dicomweb_splice: bool = True
    dicomweb_splice_threads: int = 32
    dicomweb_caller_timeout: float = 300.0

    @field_validator("dicomweb_upstream")
    @classmethod
    def _dicomweb_upstream(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("dicomweb_upstream must be an http:// or https:// URL (the PACS's DICOMweb root)")
        return v.rstrip("/")

    # Bulk Data export (fhir_server/bulk): where jobs and their NDJSON files live (empty:
    # ``<data>/bulk``), the size at which an output file is split, how long files are kept after
    # a job completes, how many jobs run at once in this process, and the bytes read per batch.
    bulk_dir: Path | None = None
    bulk_file_max_bytes: int = 100 * 1024 * 1024
    bulk_file_ttl_seconds: int = 24 * 3600
    bulk_workers: int = 2
    bulk_batch_bytes: int = 4 * 1024 * 1024

    # Notifications (fhir_server/subscriptions): the SMTP server e-mail goes through (empty host:
    # no e-mail is queued), the sender address, the topics whose events are mailed to participants
    # (comma-separated topic names, RU-54o), how often the outbox is read (seconds), the longest
    # wait between delivery attempts, consecutive failures before a Subscription shows ``error``,
    # and after how long failing deliveries stop (0: never; events stay for ``$events``).
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = "telemed@localhost"
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    smtp_timeout: float = 30.0
    notify_email_topics: str = ("consultation-request,consultation-routed,task-status,chat-message,conclusion,"
                                "deadline-overdue,appointment")
    notify_poll_seconds: float = 0.05
    notify_backoff_max_seconds: float = 60.0
    notify_error_after: int = 3
    notify_give_up_seconds: float = 0.0
    # How often open consultations are checked against their due time (operations/consult/overdue.py).
    deadline_sweep_seconds: float = 60.0

    @field_validator("store")
    @classmethod
    def _store_scheme(cls, v: str) -> str:
        if v and not v.startswith(("mongodb://", "mongodb+srv://", "sqlite:")):
            raise ValueError("store must be empty (embedded SQLite), sqlite:PATH or a mongodb:// URI")
        return v

    @field_validator("max_body_bytes", "max_depth", "default_count", "max_count", "access_token_seconds",
                     "refresh_token_seconds", "authorization_code_seconds", "token_rate_limit",
                     "bulk_file_max_bytes", "bulk_file_ttl_seconds", "bulk_workers", "bulk_batch_bytes",
                     "dicomweb_splice_threads", "dicomweb_caller_timeout")
    @classmethod
    def _positive(cls, v: int | float) -> int | float:
        if v <= 0:
            raise ValueError("must be positive")
        return v

    def bulk_path(self) -> Path:
        return self.bulk_dir or self.data / "bulk"

    def notify_state_path(self) -> Path:
        """Notification delivery state beside the embedded store (``-notify.sqlite3``)."""
        path = self.sqlite_path()
        return path.with_name(path.stem + "-notify.sqlite3")

    def keys_path(self) -> Path:
        return self.data / "keys"

    def auth_state_path(self) -> Path:
        """The authority's state beside the embedded store (``auth.sqlite3``)."""
        path = self.sqlite_path()
        return path.with_name(path.stem + "-auth.sqlite3")

    def sqlite_path(self) -> Path:
        if self.store.startswith("sqlite:"):
            return Path(self.store.removeprefix("sqlite:"))
        return self.data / "telemed.sqlite3"
