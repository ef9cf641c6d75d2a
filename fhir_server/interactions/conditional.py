"""Matching the search criteria of conditional create, update, delete and patch."""

from __future__ import annotations

from urllib.parse import parse_qsl

from fhir_server.errors import invalid, multiple_matches
from fhir_server.search.plan import Clause, Query, parse_query
from fhir_server.services import Services
from fhir_server.storage.port import Stored


def criteria(type: str, query_string: str, what: str) -> Query:
    """The filter of a conditional interaction; 400 without one (``_count``, ``_sort``... filter nothing)."""
    items = [(k, v) for k, v in parse_qsl(query_string, keep_blank_values=True) if not k.startswith("_format")]
    query = parse_query(type, items, strict=True)
    if not query.clauses:
        raise invalid(f"{what} needs search criteria that select resources", what)
    chained = [str(c) for c in query.clauses if not isinstance(c, Clause)]
    if chained:  # the commit re-checks criteria inside the write transaction, which runs no chains
        raise invalid(f"{what} criteria cannot use chained parameters or _has ({', '.join(chained)})", what)
    if query.includes or query.sort:
        raise invalid(f"{what} criteria take filters only, not _include/_revinclude/_sort", what)
    return query


async def matches(svc: Services, query: Query, limit: int = 2) -> list[Stored]:
    page = await svc.store.search(query, count=limit, cursor=None, total=False)
    return page.entries


async def single_match(svc: Services, query: Query, what: str) -> Stored | None:
    """The one resource the criteria match, None for no match; 412 when several match."""
    found = await matches(svc, query)
    if len(found) > 1:
        raise multiple_matches(f"{what} criteria {query} match more than one resource", what)
    return found[0] if found else None
