"""The patients of a ``Group`` for ``Group/{id}/$export``, fixed when the export is kicked off.

Two kinds of group (both may be combined in one Group; members are the union):

- **Static**: ``member[].entity`` references to Patients; members with ``inactive: true`` or a
  ``period`` that has ended are left out.
- **Patients of an organisation**: a ``characteristic`` coded
  ``https://telemed-fhir.org/ig/CodeSystem/group-characteristic|managing-organization`` with
  ``valueReference`` ``Organization/X`` (``exclude`` false): every Patient whose
  ``managingOrganization`` is X (``Patient?organization=Organization/X``), as of the kick-off.
"""

from __future__ import annotations

from datetime import datetime, timezone

import orjson

from fhir_server.errors import not_found, too_costly
from fhir_server.search.plan import parse_query

CHARACTERISTIC_SYSTEM = "https://telemed-fhir.org/ig/CodeSystem/group-characteristic"
MANAGING_ORGANIZATION = "managing-organization"


async def members(store, group: dict, bound: int) -> list[str]:
    """The ids of the group's patients, at most ``bound`` (else 400: too costly)."""
    ids: dict[str, None] = {}
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    for m in group.get("member") or []:
        ref = ((m.get("entity") or {}).get("reference") or "") if isinstance(m, dict) else ""
        end = (m.get("period") or {}).get("end") if isinstance(m, dict) else None
        if ref.startswith("Patient/") and not m.get("inactive") and not (end and end[:19] < now):
            ids[ref.split("/")[1]] = None
    for org in organisations(group):
        query = parse_query("Patient", [("organization", org)], strict=True)
        for id in await store.search_ids(query, bound + 1):
            ids[id] = None
    if len(ids) > bound:
        raise too_costly(f"The group has more than {bound} patients; export it by _typeFilter instead", "Group")
    return list(ids)


def organisations(group: dict) -> list[str]:
    """``Organization/X`` of every "patients of organisation X" characteristic."""
    out = []
    for c in group.get("characteristic") or []:
        codings = ((c.get("code") or {}).get("coding") or []) if isinstance(c, dict) else []
        if c.get("exclude") or not any(x.get("system") == CHARACTERISTIC_SYSTEM and x.get("code") == MANAGING_ORGANIZATION
                                       for x in codings if isinstance(x, dict)):
            continue
        ref = (c.get("valueReference") or {}).get("reference")
        if isinstance(ref, str) and ref.startswith("Organization/"):
            out.append(ref)
    return out


async def load(store, access, id: str) -> dict:
    """The Group resource, if the caller may read it (else 404, as on read)."""
    stored = await store.read("Group", id)
    if stored is None or stored.deleted or not await access.visible(stored):
        raise not_found(f"Group/{id} is not known", "Group")
    return orjson.loads(stored.json)
