"""Due times of consultations (RU-19, RU-20, UA-VI.12, UA-VI.14).

The due time is ``Task.restriction.period.end``; ``period.start`` is the receipt. It follows from
the form of care, read from the request's priority (RU-14), and from the deadline policy of the
organisation the consultation is offered to (``policy``): by default emergency (``stat``) 2 hours
after receipt, urgent 24 hours, planned the end of the day of receipt in the organisation's time
zone (UTC when it names none). While the consultant waits for information the clock is paused:
``period.end`` is removed and the time that was left is kept in the extension ``REMAINING``;
resuming sets ``period.end`` to the resume time plus that time.

A policy is a set of extensions ``POLICY`` on the Organization, one per rule: ``form-of-care``
(code), ``deadline`` (a Duration: s, min, h or d; absent: the end of the day of receipt) and
optionally ``specialty`` (CodeableConcepts: the rule holds only for requests of that profile,
RU-19 "per organisation and profile"), with the organisation's time zone in HL7's ``timezone``
extension (an IANA name). A rule may shorten the regulation's deadline, never lengthen it: an
emergency is due within 2 hours, an urgent request within 24 (965n p.19), and a longer rule is
refused when the Organization is written (``check_policy``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from fhir_server.errors import unprocessable
from operations.consult.codes import REMAINING, forms_of_care
from profiles import CANONICAL

POLICY = f"{CANONICAL}/StructureDefinition/consult-deadline-policy"
TIMEZONE = "http://hl7.org/fhir/StructureDefinition/timezone"
_UNITS = {"s": 1, "min": 60, "h": 3600, "d": 86400}
# The longest deadline the regulation allows per form of care (965n p.19); planned: the state programme's.
MAXIMUM = {"emergency": timedelta(hours=2), "urgent": timedelta(hours=24)}

_DURATION = re.compile(r"^PT(?:(\d+)H)?(?:(\d+)M)?$")
UCUM = "http://unitsofmeasure.org"


def instant(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def form_of_care(priority: str | None) -> tuple[str, str]:
    """The form of care and its deadline rule for a request priority; 422 when it has none."""
    forms = forms_of_care()
    if priority not in forms:
        names = ", ".join(f"{p} ({f})" for p, (f, _) in forms.items())
        raise unprocessable(f"The request's priority must name its form of care (RU-14): one of {names}; "
                            f"it is {priority or 'missing'}", "ServiceRequest.priority")
    return forms[priority]


@dataclass(frozen=True, slots=True)
class Rule:
    form: str  # form-of-care code
    after: timedelta | None  # None: the end of the day of receipt
    specialties: frozenset[tuple[str | None, str | None]]  # empty: every profile


@dataclass(frozen=True, slots=True)
class Policy:
    rules: tuple[Rule, ...] = ()
    zone: ZoneInfo | timezone = timezone.utc


DEFAULT = Policy()


def _rule_of(forms: set[str], ext: dict) -> Rule | str:
    """The rule a policy extension states, or why it states none (a message)."""
    parts = {}
    for sub in ext.get("extension") or ():
        if isinstance(sub, dict):
            parts.setdefault(sub.get("url"), []).append(sub)
    form = (parts.get("form-of-care") or [{}])[0].get("valueCode")
    if form not in forms:
        return f"form-of-care must be one of {', '.join(sorted(forms))}"
    after = None
    if "deadline" in parts:
        d = parts["deadline"][0].get("valueDuration") or {}
        unit, value = d.get("code") or d.get("unit"), d.get("value")
        if unit not in _UNITS or not isinstance(value, (int, float)) or value <= 0:
            return "deadline must be a positive Duration in s, min, h or d"
        after = timedelta(seconds=value * _UNITS[unit])
    limit = MAXIMUM.get(form)
    if limit is not None and (after is None or after > limit):
        return f"an {form} request is due within {limit.total_seconds() / 3600:g} hours of receipt at the latest (965n p.19)"
    specialties = frozenset((c.get("system"), c.get("code")) for sub in parts.get("specialty") or ()
                            for c in (sub.get("valueCodeableConcept") or {}).get("coding") or ())
    return Rule(form, after, specialties)


def check_policy(org: dict) -> None:
    """422 naming the extension when an Organization's deadline policy is malformed or longer
    than the regulation allows."""
    forms = {f for f, _ in forms_of_care().values()}
    for n, ext in enumerate(org.get("extension") or ()):
        if not isinstance(ext, dict):
            continue
        where = f"Organization.extension[{n}]"
        if ext.get("url") == POLICY:
            rule = _rule_of(forms, ext)
            if isinstance(rule, str):
                raise unprocessable(f"Deadline policy: {rule}", where)
        elif ext.get("url") == TIMEZONE and not _zone(ext.get("valueCode")):
            raise unprocessable(f"Time zone '{ext.get('valueCode')}' is no IANA time zone name", where)


def _zone(name) -> ZoneInfo | None:
    try:
        return ZoneInfo(name) if isinstance(name, str) and name else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def policy(org: dict | None) -> Policy:
    """The deadline policy an Organization states (malformed rules are left out)."""
    if not org:
        return DEFAULT
    forms = {f for f, _ in forms_of_care().values()}
    exts = [e for e in org.get("extension") or () if isinstance(e, dict)]
    rules = tuple(r for e in exts if e.get("url") == POLICY for r in [_rule_of(forms, e)] if isinstance(r, Rule))
    zone = next((z for e in exts if e.get("url") == TIMEZONE for z in [_zone(e.get("valueCode"))] if z), None)
    return Policy(rules, zone or timezone.utc)


async def policy_of(store, reference: str | None) -> Policy:
    """The deadline policy of the Organization ``reference`` names (the default for anything else)."""
    type, _, id = (reference or "").partition("/")
    if type != "Organization" or not id:
        return DEFAULT
    stored = await store.read("Organization", id)
    return policy(orjson.loads(stored.json)) if stored is not None and not stored.deleted else DEFAULT


async def start_for(store, task: dict, request: dict, received: datetime) -> None:
    """Set the Task's receipt and due time under the policy of the Organization it is offered
    to (its ``owner``; none yet, as for a platform-matched offer or a consilium: the defaults)."""
    owner = (task.get("owner") or {}).get("reference")
    start(task, received, await policy_of(store, owner), profiles_of(request))


def profiles_of(request: dict) -> frozenset[tuple[str | None, str | None]]:
    """A request's service profile codes (``code`` and ``performerType``), to match policy rules."""
    return frozenset((c.get("system"), c.get("code")) for key in ("code", "performerType")
                     for c in (request.get(key) or {}).get("coding") or () if isinstance(c, dict))


def due(priority: str | None, received: datetime, rules: Policy = DEFAULT,
        specialties: frozenset = frozenset()) -> datetime:
    """When the conclusion of a request of ``priority`` received at ``received`` is due, under an
    organisation's ``rules``; ``specialties`` are the request's profile codes (system, code)."""
    form, default = form_of_care(priority)
    chosen = [r for r in rules.rules if r.form == form and (not r.specialties or r.specialties & specialties)]
    chosen.sort(key=lambda r: not r.specialties)  # a rule for the request's profile first
    if chosen:
        after = chosen[0].after
    elif default == "end-of-day":
        after = None
    else:
        m = _DURATION.match(default)
        after = timedelta(hours=int(m.group(1) or 0), minutes=int(m.group(2) or 0))
    if after is not None:
        return received + after
    local = received.astimezone(rules.zone)
    return datetime.combine(local.date(), time.max, tzinfo=rules.zone).astimezone(timezone.utc)


def start(task: dict, received: datetime, rules: Policy = DEFAULT, specialties: frozenset = frozenset()) -> None:
    """Set the Task's receipt and due time (in place)."""
    end = due(task.get("priority"), received, rules, specialties)
    task["restriction"] = {"period": {"start": instant(received), "end": instant(end)}}


def pause(task: dict, now: datetime) -> None:
    """Stop the clock: keep the time left (none when already overdue) and drop the due time."""
    period = (task.get("restriction") or {}).get("period") or {}
    if "end" not in period:
        return
    left = max(parse_instant(period.pop("end")) - now, timedelta(0))
    task["extension"] = [e for e in task.get("extension") or () if e.get("url") != REMAINING] + [
        {"url": REMAINING, "valueDuration": {"value": round(left.total_seconds(), 3), "unit": "s", "system": UCUM,
                                             "code": "s"}}]


def resume(task: dict, now: datetime) -> None:
    """Restart the clock: the new due time is ``now`` plus the time that was left."""
    kept = [e for e in task.get("extension") or () if e.get("url") == REMAINING]
    if not kept:
        return
    left = timedelta(seconds=kept[0]["valueDuration"]["value"])
    rest = [e for e in task["extension"] if e.get("url") != REMAINING]
    if rest:
        task["extension"] = rest
    else:
        del task["extension"]
    task.setdefault("restriction", {}).setdefault("period", {})["end"] = instant(now + left)
