"""The DICOMweb proxy's per-process state, built once by ``create_app`` from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from dicomweb.access import Seen
from dicomweb.audit import Batch
from dicomweb.cache import MetadataCache
from dicomweb.relay import Relay
from dicomweb.splice import Movers
from dicomweb.upstream import Upstream
from fhir_server.errors import OperationOutcomeError, issue
from fhir_server.settings import Settings


@dataclass(slots=True)
class Proxy:
    upstream: Upstream  # httpx: STOW-RS (request bodies streamed from a spool file)
    relay: Relay        # raw: QIDO-RS, WADO-RS (bodies spliced or relayed), metadata
    cache: MetadataCache
    seen: Seen          # callers' visible studies, for a few seconds
    audit: Batch        # AuditEvents of the last moment, identical accesses merged

    async def close(self) -> None:
        self.audit.flush()  # before the server's Auditor closes
        self.relay.close()
        await self.upstream.close()


def open_proxy(settings: Settings) -> Proxy | None:
    """The proxy to ``dicomweb_upstream``, or None when no PACS is configured."""
    if not settings.dicomweb_upstream:
        return None
    pacs = (settings.dicomweb_upstream, settings.dicomweb_username, settings.dicomweb_password,
            settings.dicomweb_timeout)
    movers = Movers(settings.dicomweb_splice_threads) if settings.dicomweb_splice else None
    return Proxy(Upstream(*pacs), Relay(*pacs, settings.dicomweb_caller_timeout, movers),
                 MetadataCache(settings.dicomweb_cache_bytes, settings.dicomweb_cache_seconds), Seen(), Batch())


def require(svc) -> Proxy:
    """The configured proxy; 503 when the server has no PACS to proxy to."""
    if svc.dicomweb is None:
        raise OperationOutcomeError([issue("transient", "DICOMweb is not configured on this server: set "
                                           "TELEMED_DICOMWEB_UPSTREAM to the PACS's DICOMweb root URL")], status=503)
    return svc.dicomweb
