"""Worklists (SPB-2.2): named queries over the consultations, ``GET Task?_query=<name>``.

Each is an OperationDefinition of kind ``query`` under ``profiles/`` (listed in the
CapabilityStatement) and expands into ordinary search parameters that name the caller's part,
so every other search parameter, ``_count``, paging and the caller's access apply unchanged:

- ``Task?_query=available``: requested, offered to one of the caller's organisations or roles
  (``offered-to``: the owner, or a candidate of platform matching);
- ``Task?_query=in-work``: owned by the caller (a role of theirs), in-progress or on-hold;
- ``Task?_query=outgoing``: requested by the caller;
- ``Task?_query=all``: every consultation the caller takes part in (participation limits it);
- ``ServiceRequest?_query=drafts``: the caller's draft consultation requests.

``closed=true`` (in-work, outgoing, all) lists the closed consultations instead of the open
ones (the default). Filters are search parameters: ``patient.name`` (patient name),
``status`` / ``business-status``, ``priority`` (urgency: form of care), ``code`` (consultation
kind), ``focus:ServiceRequest.performer-type`` (profile: specialty). Task lists are sorted by
due time (``_sort=due``, SearchParameter ``task-due``) unless ``_sort`` is given; drafts by last
change, newest first. The caller must act as a practitioner (``all`` excepted): 403 otherwise.
An unknown named query is treated like any unknown search parameter: reported in an
OperationOutcome entry and ignored, or 400 under ``Prefer: handling=strict``.
"""

from __future__ import annotations

from fhir_server.auth.access import Access
from fhir_server.errors import invalid
from operations.consult import caller
from operations.consult.codes import CONSULT_TASK, KIND

OPEN = "draft,requested,received,accepted,ready,in-progress,on-hold"
CLOSED = "completed,cancelled,rejected,failed,entered-in-error"
QUERIES = {"Task": ("available", "in-work", "outgoing", "all"), "ServiceRequest": ("drafts",)}
WITH_CLOSED = ("in-work", "outgoing", "all")


def _closed(items: list[tuple[str, str]], name: str) -> bool:
    values = [v for k, v in items if k == "closed"]
    if not values:
        return False
    if name not in WITH_CLOSED:
        raise invalid(f"The named query '{name}' takes no parameter 'closed'", "closed")
    if len(values) > 1 or values[0] not in ("true", "false"):
        raise invalid("closed must be given once, true or false", "closed")
    return values[0] == "true"


async def expand(svc, access: Access, type: str, items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The search parameters of ``items`` with its ``_query`` (and ``closed``) replaced by the
    parameters that define the named query for this caller."""
    names = [v for k, v in items if k == "_query"]
    if len(names) > 1:
        raise invalid("_query may be given once", "_query")
    name = names[0]
    if name not in QUERIES.get(type, ()):
        return items  # an unknown named query is an unknown parameter: ignored with a warning, 400 when strict
    closed = _closed(items, name)
    rest = [(k, v) for k, v in items if k not in ("_query", "closed")]
    if name == "drafts":
        me = await caller.of(svc, access)
        extra = [("status", "draft"), ("requester", ",".join(sorted(me.refs))), ("category", f"{KIND}|")]
        sort = "-_lastUpdated"
    else:
        extra = [("_profile", CONSULT_TASK)]
        sort = "due"
        if name == "all":
            extra.append(("status", CLOSED if closed else OPEN))
        else:
            me = await caller.of(svc, access)
            mine = ",".join(sorted(me.refs))
            if name == "available":
                orgs = {caller.organization(role) for role in me.roles.values()} - {None}
                extra += [("status", "requested"), ("offered-to", ",".join(sorted({*orgs, *me.refs})))]
            elif name == "in-work":
                extra += [("status", CLOSED if closed else "in-progress,on-hold"), ("owner", mine)]
            else:
                extra += [("status", CLOSED if closed else OPEN), ("requester", mine)]
    if not any(k == "_sort" for k, _ in rest):
        rest.append(("_sort", sort))
    return rest + extra
