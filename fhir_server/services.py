"""What every handler is given: the settings, the store and the authority, built once by ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from fhir_server.audit import Auditor
from fhir_server.auth.bearer import Bearer
from fhir_server.auth.keys import KeyRing
from fhir_server.auth.principal import Principal
from fhir_server.auth.state import AuthState
from fhir_server.settings import Settings
from fhir_server.storage.port import Store


@dataclass(slots=True)
class Services:
    settings: Settings
    store: Store
    keys: KeyRing
    auth_state: AuthState
    bearer: Bearer
    auditor: Auditor
    dicomweb: object | None = None  # dicomweb.proxy.Proxy when a PACS is configured
    bulk: object | None = None  # fhir_server.bulk.jobs.Workers: bulk export jobs (set by create_app)
    notify: object | None = None  # fhir_server.subscriptions.service.Notifications (set by create_app)

    async def principal(self, request: Request) -> Principal:
        """The caller of ``request`` (401 without a valid access token)."""
        return await self.bearer.principal(request)
