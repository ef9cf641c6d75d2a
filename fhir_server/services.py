"""What every handler is given: the settings and the store, built once by ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.settings import Settings
from fhir_server.storage.port import Store


@dataclass(slots=True)
class Services:
    settings: Settings
    store: Store

    def is_admin(self, request) -> bool:
        """Whether the caller may do administrative things such as ``_cascade=delete``.

        Until authorization is configured every caller is the local administrator.
        """
        return True
