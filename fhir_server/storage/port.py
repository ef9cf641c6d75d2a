"""The storage port: the few async methods every adapter (SQLite, MongoDB) implements.

Interactions prepare a change by reading, then hand the adapter a list of ``Write``s with the
version each expects to replace. ``commit`` applies them all or none: if any expectation fails
(a concurrent writer got there first) it raises ``VersionConflict`` and nothing is written, and
the interaction re-reads and decides again. ``Guard``s make conditional creates race-safe: the
adapter re-runs the guard's query inside the write transaction and fails it if the matches
changed since the interaction looked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from fhir_server.search.plan import Query
from fhir_server.search.values import IndexValues


@dataclass(frozen=True, slots=True)
class Stored:
    """One version of a resource as stored. ``json`` is the resource's bytes (empty when deleted)."""

    type: str
    id: str
    version: int
    last_updated: str  # FHIR instant, UTC, e.g. 2026-11-23T16:42:52.123456Z
    deleted: bool
    json: bytes
    method: str = "PUT"  # the HTTP verb that made this version (history Bundle's request.method)


# Records of what happened (audit trail, provenance) refer to what was: they are never
# referrers that hold a deletion up (``Store.referrers`` leaves them out).
RECORD_TYPES = ("AuditEvent", "Provenance")


# The types whose every new version is also written to the store's outbox, in the same
# transaction: the changes the subscription topics watch (``fhir_server/subscriptions/topics.py``;
# a test checks that this covers them) and the Subscriptions themselves.
NOTIFIED_TYPES = frozenset({"ServiceRequest", "Task", "Communication", "DiagnosticReport", "Composition",
                            "Observation", "Appointment", "Subscription"})


@dataclass(frozen=True, slots=True)
class Change:
    """An outbox entry: ``type/id`` reached ``version`` at ``at``. ``key`` orders the entries
    (oldest first) and names the entry to ``Store.forget_changes``."""

    key: str
    type: str
    id: str
    version: int
    at: str


@dataclass(slots=True)
class Write:
    """A new version to store. ``expect`` is the current version it replaces (0: none exists)."""

    type: str
    id: str
    version: int
    last_updated: str
    json: bytes
    index: IndexValues | None
    expect: int
    method: str = "PUT"
    deleted: bool = False


@dataclass(slots=True)
class Guard:
    """Fails the commit unless ``query`` still matches exactly ``ids`` inside the transaction."""

    query: Query
    ids: frozenset[str] = field(default_factory=frozenset)


class VersionConflict(Exception):
    """A write's expected version, or a guard's matches, changed before the commit."""


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page, newest first. ``next_cursor`` reads the page after it, ``prev_cursor`` the page
    before it (None on the first page); see ``cursor.py``."""

    entries: list[Stored]
    next_cursor: str | None
    prev_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of matches. ``next_cursor`` reads the page after it; ``prev_cursor`` (None on the
    first page) the page before it, exactly the one that was read before this one if nothing
    changed in between (a backward read: the order reversed from this page's first entry)."""

    entries: list[Stored]
    total: int | None
    next_cursor: str | None
    prev_cursor: str | None = None


class Store(Protocol):
    async def read(self, type: str, id: str) -> Stored | None: ...

    async def vread(self, type: str, id: str, version: int) -> Stored | None: ...

    async def commit(self, writes: list[Write], guards: list[Guard] = ()) -> None: ...

    async def history(
        self,
        type: str | None,
        id: str | None,
        *,
        since: str | None,
        at: str | None,
        count: int,
        cursor: str | None,
    ) -> HistoryPage: ...

    async def search(self, query: Query, *, count: int, cursor: str | None, total: bool) -> SearchPage:
        """A page of ``count`` matches: the first (``cursor`` None), or the one a page's
        ``next_cursor`` or ``prev_cursor`` names."""
        ...

    async def read_many(self, type: str, ids: list[str], deleted: bool = False) -> list[Stored]:
        """The current, non-deleted versions of those of ``ids`` that exist (any order); with
        ``deleted``, the current versions of deleted ones too (what ``read`` answers)."""
        ...

    async def search_ids(self, query: Query, limit: int) -> list[str]:
        """Ids of up to ``limit`` resources matching ``query`` (its filters only; no sort)."""
        ...

    async def distinct_references(self, query: Query, param: str | None, limit: int) -> list[str]:
        """Distinct targets that resources matching ``query`` reference through ``param`` (None: any
        reference parameter), up to ``limit``: the ``Type/id`` strings as indexed."""
        ...

    async def probes_referrers(self, query: Query, bound: int) -> bool:
        """Whether ``_has`` with referrers matching ``query`` should reach this adapter as a
        ``Referrers`` filter (each candidate probed for a referrer) rather than as the list of
        referenced ids (at most ``bound``): the adapter can compile it and ``query`` matches many
        resources."""
        ...

    async def referrers(self, targets: list[str], limit: int) -> list[str]: ...

    async def scan(self, type: str, after: str | None, count: int) -> list[Stored]:
        """Up to ``count`` current versions of ``type``, deleted ones included, in id order after
        the id ``after`` (None: from the start). Bulk export reads its snapshot with it."""
        ...

    async def reindex(self, type: str, after: str | None, count: int) -> str | None:
        """Rebuild the search index of up to ``count`` current resources of ``type`` after the id
        ``after`` (None: from the start), from their stored JSON; versions are not changed, and a
        resource changed meanwhile keeps the index its writer gave it. Answers the last id done,
        None when there was none left (``telemed reindex``)."""
        ...

    async def changes(self, limit: int) -> list[Change]:
        """Up to ``limit`` outbox entries, oldest first (every committed version of a
        ``NOTIFIED_TYPES`` resource is one, written in its commit)."""
        ...

    async def forget_changes(self, keys: list[str]) -> None:
        """Delete the outbox entries named (once their notifications are queued)."""
        ...

    async def close(self) -> None: ...
