"""transaction (and batch dispatch): POST [base] with a Bundle.

A transaction is all or nothing: ids are assigned for the entries that create, ``urn:uuid``
fullUrls and conditional references (``Patient?identifier=...``) are resolved and rewritten,
entries are planned in the spec's order (DELETE, POST, PUT/PATCH, GET), each seeing what the
entries before it planned (``pending.Pending``), referential integrity is checked on the state
the whole Bundle leaves, and every write is committed in one storage transaction. If a
concurrent writer changes a resource the bundle read, the whole bundle is planned again.
"""

from __future__ import annotations

import dataclasses

from starlette.requests import Request
from starlette.responses import Response

from fhir_server import audit
from fhir_server.auth.access import for_request
from fhir_server.bundle_bytes import bundle, entry
from fhir_server.errors import OperationOutcomeError, invalid, structure
from fhir_server.http import base_url, json_response, negotiate, read_json, wants_pretty
from fhir_server.interactions import batch
from fhir_server.interactions.bundle_entry import (
    ORDER, Entry, check_resource, located, parse_entry, plan_write, response_fields,
)
from fhir_server.interactions.conditional import criteria, matches, single_match
from fhir_server.interactions.delete import still_referenced
from fhir_server.interactions.pending import Pending
from fhir_server.references import resolve_references
from fhir_server.services import Services
from fhir_server.write import Planned, commit_retrying, new_id, new_version


async def handle(request: Request, svc: Services) -> Response:
    negotiate(request)
    body = await read_json(request, svc.settings.max_body_bytes)
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise structure("POST to the base takes a Bundle of type batch or transaction", "Bundle")
    kind = body.get("type")
    if kind not in ("batch", "transaction"):
        raise invalid("Bundle.type must be batch or transaction", "Bundle.type")
    raw_entries = body.get("entry") or []
    if not isinstance(raw_entries, list):
        raise invalid("Bundle.entry must be a list", "Bundle.entry")
    base = base_url(request, svc.settings.base_url)
    if kind == "batch":
        entries = await batch.run(request, svc, raw_entries, base)
    else:
        entries = await run(request, svc, raw_entries, base)
    out = bundle({"resourceType": "Bundle", "type": f"{kind}-response"}, entries)
    return json_response(out, 200, None, negotiate(request), wants_pretty(request))


async def run(request: Request, svc: Services, raw_entries: list, base: str) -> list[bytes]:
    access = await for_request(request, svc)
    entries = [parse_entry(i, raw, base) for i, raw in enumerate(raw_entries)]
    for e in entries:
        if e.resource is not None and e.method in ("POST", "PUT", "PATCH"):
            check_resource(svc, e)
    _check_duplicates(entries)
    writing = sorted((e for e in entries if e.method not in ("GET", "HEAD")), key=lambda e: (ORDER[e.method], e.index))

    named = {(e.type, e.id) for e in writing if e.type and e.id}  # PUT/PATCH/DELETE Type/id

    async def attempt() -> list[tuple[Entry, Planned | bytes]]:
        pending = Pending(svc.store)
        await pending.prefetch(named)
        tx = dataclasses.replace(svc, store=pending)
        tx_access = access.on(tx)
        results: dict[int, Planned | bytes] = {}
        owner: dict[tuple[str, str], Entry] = {}
        guards = []

        async def plan(e: Entry, ids: dict[int, str], urls: dict[str, str], cache: dict[str, str]) -> None:
            try:
                resource = (await resolve_references(tx, e.resource, urls, f"{e.where}.resource", cache)
                            if e.resource is not None else None)
                planned = await plan_write(tx, tx_access, e, resource, ids.get(e.index))
                for w in planned.writes:
                    other = owner.setdefault((w.type, w.id), e)
                    if other is not e:
                        raise invalid(f"{w.type}/{w.id} is changed by both {other.where} and {e.where}", e.where)
            except OperationOutcomeError as exc:
                raise located(exc, e) from None
            pending.add(planned.writes)
            results[e.index] = planned
            guards.extend(planned.guards)

        # DELETEs first; then ids are assigned (conditional creates see the deletions), then the rest.
        for e in writing:
            if e.method == "DELETE":
                await plan(e, {}, {}, {})
        ids = await _assign_ids(tx, entries)
        urls, cache = _full_urls(entries, ids), {}
        for e in writing:
            if e.method != "DELETE":
                await plan(e, ids, urls, cache)
        broken = await pending.dangling(svc.settings.max_referrers_listed)
        if broken:
            target, referrers = broken
            raise located(still_referenced(target, referrers, svc.settings.max_referrers_listed),
                          owner[tuple(target.split("/", 1))])
        if pending.writes or guards:
            writes = list(pending.writes.values())
            if writes:
                touched = [f"{w.type}/{w.id}" for w in writes]
                patients = sorted({p for w in writes for p in audit.patients_of(w.type, w.id, w.index)})
                record = audit.event("transaction", access.who, audit.address(request), touched, patients)
                writes.append(new_version(record, new_id(), 1, "POST"))
            await svc.store.commit(writes, pending.rebased(guards))
        for e in entries:  # reads see the committed writes; a failed read is reported in its entry
            if e.method in ("GET", "HEAD"):
                try:
                    results[e.index] = await batch.read_entry(request, svc, access, e)
                except OperationOutcomeError as exc:
                    results[e.index] = batch.error_entry(exc)
        return [(e, results[e.index]) for e in entries]

    done = await commit_retrying(svc.store, attempt)
    minimal = "return=minimal" in request.headers.get("prefer", "")
    out = []
    for e, result in done:
        if isinstance(result, bytes):
            out.append(result)
            continue
        fields = {"response": response_fields(result, base)}
        if result.stored is not None and not result.stored.deleted:
            fields = {"fullUrl": f"{base}/{result.stored.type}/{result.stored.id}", **fields}
        out.append(entry(fields, None if minimal or result.stored is None or result.stored.deleted
                         else result.stored.json))
    return out


def _check_duplicates(entries: list[Entry]) -> None:
    """400 when two entries share a fullUrl or change the same Type/id (R4 bdl-7; http.html#trules)."""
    urls: dict[str, int] = {}
    for e in entries:
        if e.full_url:
            if e.full_url in urls:
                raise invalid(f"fullUrl {e.full_url} is used by both Bundle.entry[{urls[e.full_url]}] and "
                              f"Bundle.entry[{e.index}]", f"Bundle.entry[{e.index}].fullUrl")
            urls[e.full_url] = e.index
    seen: dict[str, int] = {}
    for e in entries:
        if e.method in ("GET", "HEAD") or not e.id:
            continue
        key = f"{e.type}/{e.id}"
        if key in seen:
            raise invalid(f"{key} is changed by both Bundle.entry[{seen[key]}] and Bundle.entry[{e.index}]",
                          f"Bundle.entry[{e.index}]")
        seen[key] = e.index


async def _assign_ids(svc: Services, entries: list[Entry]) -> dict[int, str]:
    """The id each creating entry will have (or already has, for conditional matches)."""
    ids: dict[int, str] = {}
    for e in entries:
        if e.method == "POST":
            found = []
            if e.if_none_exist:
                found = await matches(svc, criteria(e.type, e.if_none_exist, "ifNoneExist"))
            ids[e.index] = found[0].id if len(found) == 1 else new_id()
        elif e.method == "PUT" and e.id:
            ids[e.index] = e.id
        elif e.method == "PUT" and e.query:
            try:
                found = await single_match(svc, criteria(e.type, e.query, "request.url"), "Conditional update")
            except OperationOutcomeError as exc:
                raise located(exc, e) from None
            ids[e.index] = found.id if found else (e.resource or {}).get("id") or new_id()
    return ids


def _full_urls(entries: list[Entry], ids: dict[int, str]) -> dict[str, str]:
    """fullUrl (urn:uuid:..., or an absolute URL on this server) -> the Type/id it becomes."""
    urls = {}
    for e in entries:
        if e.full_url and e.index in ids:
            urls[e.full_url] = f"{e.type}/{ids[e.index]}"
    return urls
