"""An independent FHIR R4 search matcher: the expected results of the correctness tests.

Given the resources (JSON dicts, as the server stored them), ``Oracle.search(type, items)``
evaluates a search by reading the JSON directly, with per-parameter element paths written here
by hand (``PARAMS``) and the rules of http://hl7.org/fhir/R4/search.html implemented here: it
imports nothing from ``fhir_server``.

Where the specification leaves a choice to the server, the oracle does not pick one: each
resource matches ``True``, ``False`` or ``MAYBE`` (the spec allows either), and the result is an
``Expect(must, may)``: the server must return every id of ``must``, and may return those of
``may`` too. Every such latitude is named where it is decided (search for ``MAYBE``).

Assumptions (the spec's own "server's local time zone" and open points):
- the server's time zone is UTC: a date or dateTime without a zone (``2024-05-03``) covers that
  day in UTC;
- a resource matches when any of its values matches, except that ``ne`` is ``MAYBE`` when some
  values are equal and some are not (R4 does not say which reading of "not equal" applies), and
  ``:not`` matches when *no* value matches (R4: "includes resources that have no value");
- numbers: ``eq``/``ne`` use the implicit precision of the search value (``100`` is
  [99.5, 100.5)), ``gt``/``lt``/``ge``/``le`` compare exactly (R4's table: "gt100 values that
  are greater than exactly 100"); ``sa``/``eb`` must hold beyond the precision range and may
  hold beyond the exact value; ``ap`` must hold for an equal value and may within the precision
  range or 20% (R4 only recommends 10%);
- quantities: ``n|system|code`` compares in the unit given or, for UCUM, in canonical units with
  the search value's precision scaled by the unit (``5|ucum|kg`` is [4.5, 5.5) kg = [4500, 5500) g);
  ``n||code`` matches the code or the human unit (R4's example) and may match canonically;
- strings fold case and accents (Unicode decomposition, combining marks dropped, lower case);
- ``:text`` on tokens must match when a CodeableConcept.text, Coding.display or
  Identifier.type.text starts with the text, and may match a later word;
- uri ``:below``/``:above`` must match along ``/`` path segments and may match a bare string
  prefix (R4 speaks of path hierarchy without defining it for non-segment prefixes and URNs);
- dates ``ap``: must match what ``eq`` does, may match ranges within 20% of the gap to now;
- a Reference with only an identifier is ``MAYBE`` for ``:missing`` on that reference param;
- composites (R4 3.1.1.5.8): ``a$b`` matches when one element (an ``Observation.component``,
  the Observation itself for ``code-value-*``, a ``DocumentReference.relatesTo``) matches every
  component, each by its own type's rules; ``\\$`` is a literal ``$``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from functools import cmp_to_key
from typing import Any, Callable, Iterable

UTC = timezone.utc
MAYBE = None  # the third truth value: the spec allows the server either answer
NEG_INF = datetime.min.replace(tzinfo=UTC)
POS_INF = datetime.max.replace(tzinfo=UTC)
UCUM = "http://unitsofmeasure.org"


# ----------------------------------------------------------------------------- three-valued logic


def t_or(values: Iterable[bool | None]) -> bool | None:
    out: bool | None = False
    for v in values:
        if v is True:
            return True
        if v is MAYBE:
            out = MAYBE
    return out


def t_and(values: Iterable[bool | None]) -> bool | None:
    out: bool | None = True
    for v in values:
        if v is False:
            return False
        if v is MAYBE:
            out = MAYBE
    return out


def t_not(v: bool | None) -> bool | None:
    return MAYBE if v is MAYBE else not v


@dataclass(frozen=True)
class Expect:
    must: frozenset[str]
    may: frozenset[str] = frozenset()

    def admits(self, ids: set[str]) -> bool:
        return self.must <= ids <= (self.must | self.may)


# ----------------------------------------------------------------------------- value forms


def fold(s: str) -> str:
    decomposed = unicodedata.normalize("NFD", s)
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn").lower()


_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?"
                   r"(Z|[+-]\d{2}:\d{2})?)?)?)?$")


def date_range(text: str) -> tuple[datetime, datetime]:
    """The half-open UTC range [lo, hi) that a FHIR date/dateTime/instant covers at its precision."""
    m = _DATE.match(text)
    if not m:
        raise ValueError(f"not a date: {text!r}")
    y, mo, d, hh, mi, ss, frac, tz = m.groups()
    year = int(y)
    if mo is None:
        return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    month = int(mo)
    if d is None:
        lo = datetime(year, month, 1, tzinfo=UTC)
        hi = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
        return lo, hi
    day = datetime(year, month, int(d), tzinfo=UTC)
    if hh is None:
        return day, day + timedelta(days=1)
    offset = timedelta(0)
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        offset = sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
    start = day + timedelta(hours=int(hh), minutes=int(mi)) - offset
    if ss is None:
        return start, start + timedelta(minutes=1)
    start += timedelta(seconds=int(ss))
    if frac is None:
        return start, start + timedelta(seconds=1)
    start += timedelta(microseconds=int(frac.ljust(6, "0")))
    return start, start + timedelta(microseconds=10 ** (6 - len(frac)))


def period_range(p: dict) -> tuple[datetime, datetime] | None:
    """A Period: a missing start is open below, a missing end open above (ongoing)."""
    start, end = p.get("start"), p.get("end")
    if start is None and end is None:
        return None
    return (date_range(start)[0] if start else NEG_INF, date_range(end)[1] if end else POS_INF)


def precision_range(text: str) -> tuple[Decimal, Decimal, Decimal]:
    """(value, lo, hi): ``100`` is 100 in [99.5, 100.5), ``5.40`` is 5.40 in [5.395, 5.405)."""
    n = Decimal(text)
    half = Decimal(1).scaleb(n.as_tuple().exponent) / 2
    return n, n - half, n + half


# A few UCUM units: code -> (factor to the base unit, dimension)
_UNITS: dict[str, tuple[Fraction, str]] = {
    "ug": (Fraction(1, 10**6), "mass"), "mg": (Fraction(1, 1000), "mass"), "g": (Fraction(1), "mass"),
    "kg": (Fraction(1000), "mass"),
    "umol/L": (Fraction(1, 1000), "amount/volume"), "mmol/L": (Fraction(1), "amount/volume"),
    "mol/L": (Fraction(1000), "amount/volume"),
    "mg/dL": (Fraction(10), "mass/volume"), "g/L": (Fraction(1000), "mass/volume"),  # g/m3
    "s": (Fraction(1), "time"), "min": (Fraction(60), "time"), "h": (Fraction(3600), "time"),
    "d": (Fraction(86400), "time"),
    "mm[Hg]": (Fraction(133322), "pressure"), "kPa": (Fraction(1000000), "pressure"),  # g.m-1.s-2 (mPa)
}


def ucum(code: str | None) -> tuple[Fraction, str] | None:
    return _UNITS.get(code) if code else None


# ----------------------------------------------------------------------------- element paths


@dataclass(frozen=True)
class Tok:
    system: str | None
    code: str | None
    texts: tuple[str, ...] = ()
    types: tuple[tuple[str | None, str | None], ...] = ()  # an Identifier's type codings


@dataclass(frozen=True)
class Qty:
    value: Decimal
    system: str | None
    code: str | None
    unit: str | None


@dataclass(frozen=True)
class Ref:
    reference: str | None
    identifier: dict | None


def _list(v: Any) -> list:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def _strings(*values: Any) -> list[str]:
    out = []
    for v in values:
        out += [s for s in _list(v) if isinstance(s, str) and s]
    return out


def _name_parts(r: dict) -> list[str]:
    out = []
    for n in _list(r.get("name")):
        out += _strings(n.get("family"), n.get("given"), n.get("prefix"), n.get("suffix"), n.get("text"))
    return out


def _address_parts(r: dict, only: str | None = None) -> list[str]:
    out = []
    for a in _list(r.get("address")):
        fields = [only] if only else ["line", "city", "district", "state", "postalCode", "country", "text"]
        out += _strings(*(a.get(f) for f in fields))
    return out


def _concept_tokens(cc: dict | None) -> list[Tok]:
    if not cc:
        return []
    text = (cc["text"],) if cc.get("text") else ()
    toks = [Tok(c.get("system"), c.get("code"), text + ((c["display"],) if c.get("display") else ()))
            for c in _list(cc.get("coding"))]
    if not toks and text:
        toks = [Tok(None, None, text)]
    return toks


def _concepts(v: Any) -> list[Tok]:
    return [t for cc in _list(v) for t in _concept_tokens(cc)]


def _coding_tokens(v: Any) -> list[Tok]:
    return [Tok(c.get("system"), c.get("code"), (c["display"],) if c.get("display") else ()) for c in _list(v)]


def _identifiers(v: Any) -> list[Tok]:
    out = []
    for i in _list(v):
        kind = i.get("type") or {}
        out.append(Tok(i.get("system"), i.get("value"), (kind["text"],) if kind.get("text") else (),
                       tuple((c.get("system"), c.get("code")) for c in _list(kind.get("coding")))))
    return out


def _code(v: Any) -> list[Tok]:
    return [Tok(None, c) for c in _list(v) if isinstance(c, str)]


def _boolean(v: Any) -> list[Tok]:
    return [Tok(None, "true" if b else "false") for b in _list(v) if isinstance(b, bool)]


def _telecom(r: dict, system: str | None = None) -> list[Tok]:
    # R4 token table: a ContactPoint matches on its value; it has no token system
    return [Tok(None, t["value"]) for t in _list(r.get("telecom"))
            if t.get("value") and (system is None or t.get("system") == system)]


def _date(v: Any) -> list[tuple[datetime, datetime]]:
    return [date_range(s) for s in _list(v) if isinstance(s, str)]


def _periods(v: Any) -> list[tuple[datetime, datetime]]:
    return [rng for p in _list(v) if (rng := period_range(p)) is not None]


def _effective(r: dict) -> list[tuple[datetime, datetime]]:
    return _date(r.get("effectiveDateTime")) + _date(r.get("effectiveInstant")) + _periods(r.get("effectivePeriod"))


def _quantities(v: Any) -> list[Qty]:
    return [Qty(Decimal(repr(q["value"])) if isinstance(q["value"], float) else Decimal(q["value"]),
                q.get("system"), q.get("code"), q.get("unit")) for q in _list(v) if "value" in q]


def _refs(v: Any) -> list[Ref]:
    return [Ref(x.get("reference"), x.get("identifier")) for x in _list(v)]


def _refs_of_type(v: Any, type: str) -> list[Ref]:
    return [ref for ref in _refs(v) if ref.reference and ref.reference.startswith(type + "/")]


def _numbers(v: Any) -> list[Decimal]:
    return [Decimal(repr(n)) if isinstance(n, float) else Decimal(n) for n in _list(v)
            if isinstance(n, (int, float)) and not isinstance(n, bool)]


@dataclass(frozen=True)
class Param:
    type: str  # string | token | date | number | quantity | reference | uri
    values: Callable[[dict], list]
    targets: tuple[str, ...] = ()


def _p(type: str, values: Callable[[dict], list], targets: tuple[str, ...] = ()) -> Param:
    return Param(type, values, targets)


@dataclass(frozen=True)
class Composite:
    """A composite parameter: the elements it looks at, and per component a ``Param`` whose
    ``values`` read one element."""

    elements: Callable[[dict], list]
    components: tuple[Param, ...]
    type: str = "composite"


def _self(r: dict) -> list[dict]:
    return [r]


def _components(r: dict) -> list[dict]:
    return _list(r.get("component"))


_CODE = _p("token", lambda e: _concepts(e.get("code")))
_VALUE_QUANTITY = _p("quantity", lambda e: _quantities(e.get("valueQuantity")))
_VALUE_CONCEPT = _p("token", lambda e: _concepts(e.get("valueCodeableConcept")))
_VALUE_DATE = _p("date", lambda e: _date(e.get("valueDateTime")) + _periods(e.get("valuePeriod")))
_VALUE_STRING = _p("string", lambda e: _strings(e.get("valueString")))


PARAMS: dict[str, dict[str, Param]] = {
    "Patient": {
        "name": _p("string", _name_parts),
        "family": _p("string", lambda r: [s for n in _list(r.get("name")) for s in _strings(n.get("family"))]),
        "given": _p("string", lambda r: [s for n in _list(r.get("name")) for s in _strings(n.get("given"))]),
        "address": _p("string", _address_parts),
        "address-city": _p("string", lambda r: _address_parts(r, "city")),
        "address-postalcode": _p("string", lambda r: _address_parts(r, "postalCode")),
        "birthdate": _p("date", lambda r: _date(r.get("birthDate"))),
        "death-date": _p("date", lambda r: _date(r.get("deceasedDateTime"))),
        "gender": _p("token", lambda r: _code(r.get("gender"))),
        "active": _p("token", lambda r: _boolean(r.get("active"))),
        "identifier": _p("token", lambda r: _identifiers(r.get("identifier"))),
        "telecom": _p("token", _telecom),
        "phone": _p("token", lambda r: _telecom(r, "phone")),
        "email": _p("token", lambda r: _telecom(r, "email")),
    },
    "Observation": {
        "code": _p("token", lambda r: _concepts(r.get("code"))),
        "category": _p("token", lambda r: _concepts(r.get("category"))),
        "status": _p("token", lambda r: _code(r.get("status"))),
        "date": _p("date", _effective),
        "value-quantity": _p("quantity", lambda r: _quantities(r.get("valueQuantity"))),
        "value-string": _p("string", lambda r: _strings(r.get("valueString"))
                           + _strings((r.get("valueCodeableConcept") or {}).get("text"))),
        "subject": _p("reference", lambda r: _refs(r.get("subject")), ("Group", "Device", "Patient", "Location")),
        "patient": _p("reference", lambda r: _refs_of_type(r.get("subject"), "Patient"), ("Patient",)),
        "encounter": _p("reference", lambda r: _refs(r.get("encounter")), ("Encounter", "EpisodeOfCare")),
        "code-value-quantity": Composite(_self, (_CODE, _VALUE_QUANTITY)),
        "code-value-concept": Composite(_self, (_CODE, _VALUE_CONCEPT)),
        "code-value-date": Composite(_self, (_CODE, _VALUE_DATE)),
        "code-value-string": Composite(_self, (_CODE, _VALUE_STRING)),
        "component-code-value-quantity": Composite(_components, (_CODE, _VALUE_QUANTITY)),
        "component-code-value-concept": Composite(_components, (_CODE, _VALUE_CONCEPT)),
        "combo-code-value-quantity": Composite(lambda r: [r, *_components(r)], (_CODE, _VALUE_QUANTITY)),
        "combo-code-value-concept": Composite(lambda r: [r, *_components(r)], (_CODE, _VALUE_CONCEPT)),
    },
    "Encounter": {
        "status": _p("token", lambda r: _code(r.get("status"))),
        "class": _p("token", lambda r: _coding_tokens(r.get("class"))),
        "type": _p("token", lambda r: _concepts(r.get("type"))),
        "date": _p("date", lambda r: _periods(r.get("period"))),
        "length": _p("quantity", lambda r: _quantities(r.get("length"))),
        "subject": _p("reference", lambda r: _refs(r.get("subject")), ("Group", "Patient")),
        "patient": _p("reference", lambda r: _refs_of_type(r.get("subject"), "Patient"), ("Patient",)),
    },
    "RiskAssessment": {
        "probability": _p("number", lambda r: [n for p in _list(r.get("prediction"))
                                               for n in _numbers(p.get("probabilityDecimal"))]),
        "date": _p("date", lambda r: _date(r.get("occurrenceDateTime"))),
        "subject": _p("reference", lambda r: _refs(r.get("subject")), ("Group", "Patient")),
        "patient": _p("reference", lambda r: _refs_of_type(r.get("subject"), "Patient"), ("Patient",)),
    },
    "ValueSet": {
        "url": _p("uri", lambda r: _strings(r.get("url"))),
        "name": _p("string", lambda r: _strings(r.get("name"))),
        "status": _p("token", lambda r: _code(r.get("status"))),
    },
    "Group": {},
    "DocumentReference": {
        "relatesto": _p("reference", lambda r: [ref for x in _list(r.get("relatesTo")) for ref in _refs(x.get("target"))],
                        ("DocumentReference",)),
        "relationship": Composite(lambda r: _list(r.get("relatesTo")), (
            _p("reference", lambda e: _refs(e.get("target")), ("DocumentReference",)),
            _p("token", lambda e: _code(e.get("code"))))),
    },
}
COMMON = {
    "_id": _p("token", lambda r: [Tok(None, r["id"])]),
    "_lastUpdated": _p("date", lambda r: _date(r["meta"]["lastUpdated"])),
}
RESULT_PARAMS = {"_sort", "_count", "_include", "_revinclude", "_include:iterate", "_revinclude:iterate", "_total"}


def param(type: str, code: str) -> Param | Composite:
    if code in COMMON:
        return COMMON[code]
    return PARAMS[type][code]


# ----------------------------------------------------------------------------- query values


def split_values(raw: str) -> list[str]:
    """Comma-separated alternatives; ``\\,`` is a literal comma."""
    return re.split(r"(?<!\\),", raw)


def unescape(s: str) -> str:
    return re.sub(r"\\([,|$\\])", r"\1", s)


def split_token(raw: str) -> tuple[str | None, str]:
    m = re.match(r"^((?:[^|\\]|\\.)*)\|(.*)$", raw)
    if not m:
        return None, unescape(raw)
    return unescape(m.group(1)), unescape(m.group(2))


PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


def split_components(raw: str) -> list[str]:
    """A composite value's components; ``\\$`` is a literal ``$``."""
    return re.split(r"(?<!\\)\$", raw)


def split_prefix(raw: str) -> tuple[str, str]:
    if raw[:2] in PREFIXES and len(raw) > 2 and not raw[2].isalpha():
        return raw[:2], raw[2:]
    return "eq", raw


# ----------------------------------------------------------------------------- matching


def _ordered_match(prefix: str, values: list, match: Callable[[str, Any], bool | None]) -> bool | None:
    """A prefix over a resource's values: any value matching; for ``ne``, True when some value
    is not equal and none is equal, False when no value is not equal, else ``MAYBE`` (R4 leaves
    "not equal" over several values open: some value differs, or no value is equal)."""
    if prefix != "ne":
        return t_or(match(prefix, v) for v in values)
    differs = t_or(match("ne", v) for v in values)
    if differs is False:
        return False
    if differs is True and t_or(match("eq", v) for v in values) is False:
        return True
    return MAYBE


def date_match(prefix: str, s: tuple[datetime, datetime], t: tuple[datetime, datetime]) -> bool | None:
    """R4 3.1.1.4.1.3 (ranges): ``s`` the search value's range, ``t`` the target's, both [lo, hi)."""
    contains = s[0] <= t[0] and t[1] <= s[1]
    above = t[1] > s[1]   # the range above the search value intersects the target's
    below = t[0] < s[0]   # the range below the search value intersects the target's
    if prefix == "eq":
        return contains
    if prefix == "ne":
        return not contains
    if prefix == "gt":
        return above
    if prefix == "lt":
        return below
    if prefix == "ge":
        return above or contains
    if prefix == "le":
        return below or contains
    if prefix == "sa":
        return t[0] >= s[1]
    if prefix == "eb":
        return t[1] <= s[0]
    if prefix == "ap":
        if contains:
            return True
        now = datetime.now(UTC)
        slack = max(abs(now - s[0]), abs(now - s[1])) * 0.2
        overlaps = t[0] < s[1] + slack and t[1] > s[0] - slack
        return MAYBE if overlaps else False
    raise ValueError(prefix)


def number_match(prefix: str, text: str, x: Fraction, scale: Fraction = Fraction(1)) -> bool | None:
    """``x`` (already in the search value's unit, times ``scale``) against ``text``'s number."""
    n, lo, hi = precision_range(text)
    n, lo, hi = Fraction(n) * scale, Fraction(lo) * scale, Fraction(hi) * scale
    if prefix == "eq":
        return lo <= x < hi
    if prefix == "ne":
        return not lo <= x < hi
    if prefix == "gt":
        return x > n
    if prefix == "lt":
        return x < n
    if prefix == "ge":
        return x >= n
    if prefix == "le":
        return x <= n
    if prefix == "sa":
        return True if x >= hi else (MAYBE if x > n else False)
    if prefix == "eb":
        return True if x < lo else (MAYBE if x < n else False)
    if prefix == "ap":  # only the recommendation (10%) is given: exactly equal must match
        if x == n:
            return True
        return MAYBE if lo <= x < hi or abs(x - n) <= abs(n) * Fraction(1, 5) else False
    raise ValueError(prefix)


def string_match(modifier: str | None, s: str, v: str) -> bool:
    if modifier == "exact":
        return v == s
    if modifier == "contains":
        return fold(s) in fold(v)
    return fold(v).startswith(fold(s))


def token_match(raw: str, t: Tok) -> bool:
    system, code = split_token(raw)
    if system is None:
        return t.code == code
    if system == "":
        return t.system is None and t.code == code
    if code == "":
        return t.system == system
    return t.system == system and t.code == code


def token_text_match(s: str, t: Tok) -> bool | None:
    folded = fold(s)
    if any(fold(x).startswith(folded) for x in t.texts):
        return True
    words = [w for x in t.texts for w in re.split(r"[\s,\[\]()/]+", fold(x))]
    return MAYBE if any(w.startswith(folded) for w in words) or any(folded in fold(x) for x in t.texts) else False


def uri_match(modifier: str | None, s: str, v: str) -> bool | None:
    if modifier is None:
        return v == s
    if modifier == "below":
        if v == s or v.startswith(s.rstrip("/") + "/"):
            return True
        return MAYBE if v.startswith(s) else False
    if modifier == "above":
        if s == v or s.startswith(v.rstrip("/") + "/"):
            return True
        return MAYBE if s.startswith(v) else False
    raise ValueError(modifier)


def quantity_match(prefix: str, raw: str, q: Qty) -> bool | None:
    number, _, rest = raw.partition("|")
    system, _, code = rest.partition("|") if rest else (None, "", None)
    system, code = system or None, code or None
    if code is None and system is None:  # a number alone: any unit
        return number_match(prefix, number, Fraction(q.value))
    if code is None:  # n|system|: the system only
        native_ok, canonical_ok = q.system == system, False
    else:
        native_ok = (q.system == system and q.code == code) if system else code in (q.code, q.unit)
        unit, stored = ucum(code), ucum(q.code) if q.system == UCUM else None
        canonical_ok = system in (None, UCUM) and unit is not None and stored is not None and unit[1] == stored[1]
    if not native_ok and not canonical_ok:
        # a value in another unit: not comparable, so whether it is "not equal" is open
        return MAYBE if prefix == "ne" else False
    native = number_match(prefix, number, Fraction(q.value)) if native_ok else False
    if native is True or not canonical_ok:
        return native
    canonical = number_match(prefix, number, Fraction(q.value) * stored[0], unit[0])
    if system is None and canonical is True:
        canonical = MAYBE  # "n||code": canonical matching is the server's choice
    return t_or([native, canonical])


# ----------------------------------------------------------------------------- the oracle


class Oracle:
    def __init__(self, resources: list[dict]):
        self.by_type: dict[str, dict[str, dict]] = {}
        for r in resources:
            self.by_type.setdefault(r["resourceType"], {})[r["id"]] = r

    def resources(self, type: str) -> dict[str, dict]:
        return self.by_type.get(type, {})

    def resolve(self, reference: str | None, types: Iterable[str]) -> dict | None:
        if not reference or "/" not in reference:
            return None
        type, _, id = reference.partition("/")
        if type not in types:
            return None
        return self.resources(type).get(id)

    # -- search

    def search(self, type: str, items: list[tuple[str, str]]) -> Expect:
        filters = [(n, v) for n, v in items if n not in RESULT_PARAMS]
        must, may = set(), set()
        for id, r in self.resources(type).items():
            verdict = t_and(self.match(type, r, n, v) for n, v in filters)
            if verdict is True:
                must.add(id)
            elif verdict is MAYBE:
                may.add(id)
        return Expect(frozenset(must), frozenset(may))

    def match(self, type: str, r: dict, name: str, raw: str) -> bool | None:
        if name.startswith("_has:"):
            _, htype, hparam, rest = name.split(":", 3)
            p = param(htype, hparam)
            me = f"{type}/{r['id']}"
            return t_or(self.match(htype, x, rest, raw) for x in self.resources(htype).values()
                        if any(ref.reference == me for ref in p.values(x)))
        head, dot, rest = name.partition(".")
        code, _, modifier = head.partition(":")
        modifier = modifier or None
        if dot:  # a chain: the referenced resources (of the modifier's type, if any) match ``rest``
            p = param(type, code)
            targets = (modifier,) if modifier else p.targets
            return t_or(self.match(t["resourceType"], t, rest, raw) for ref in p.values(r)
                        if (t := self.resolve(ref.reference, targets)) is not None
                        and self._knows(t["resourceType"], rest))
        p = param(type, code)
        if isinstance(p, Composite):
            assert modifier is None, modifier
            return t_or(self._match_composite(p, r, v) for v in split_values(raw))
        values = p.values(r)
        if modifier == "missing":
            present = bool(values)
            if p.type == "reference" and not any(ref.reference for ref in values) and values:
                present = MAYBE  # only an identifier: the element is there, the reference is not
            want_missing = raw == "true"
            return t_not(present) if want_missing else present
        if modifier == "not":
            return t_not(t_or(self.match(type, r, code, v) for v in split_values(raw)))
        return t_or(self._match_value(p, modifier, v, values) for v in split_values(raw))

    def _match_composite(self, p: Composite, r: dict, raw: str) -> bool | None:
        """Some element matches every component (never components of different elements)."""
        parts = split_components(raw)
        assert len(parts) == len(p.components), raw
        return t_or(t_and(self._match_value(c, None, part, c.values(element)) for c, part in zip(p.components, parts))
                    for element in p.elements(r))

    def _knows(self, type: str, rest: str) -> bool:
        code = re.split(r"[:.]", rest, maxsplit=1)[0]
        return code in COMMON or code in PARAMS.get(type, {})

    def _match_value(self, p: Param, modifier: str | None, raw: str, values: list) -> bool | None:
        if p.type == "string":
            s = unescape(raw)
            return t_or(string_match(modifier, s, v) for v in values)
        if p.type == "token":
            if modifier == "text":
                return t_or(token_text_match(unescape(raw), t) for t in values)
            if modifier == "of-type":  # type-system|type-code|value (R4: all three parts present)
                tsys, tcode, value = (unescape(x) for x in re.split(r"(?<!\\)\|", raw))
                return t_or((tsys, tcode) in t.types and t.code == value for t in values)
            assert modifier is None, modifier
            return t_or(token_match(raw, t) for t in values)
        if p.type == "uri":
            return t_or(uri_match(modifier, unescape(raw), v) for v in values)
        if p.type == "reference":
            if modifier == "identifier":
                return t_or(token_match(raw, Tok(ref.identifier.get("system"), ref.identifier.get("value")))
                            for ref in values if ref.identifier)
            target = unescape(raw)
            if "/" not in target:
                types = (modifier,) if modifier else p.targets
                return t_or(ref.reference in {f"{t}/{target}" for t in types} for ref in values)
            return t_or(ref.reference == target for ref in values)
        prefix, text = split_prefix(raw)
        if p.type == "date":
            s = date_range(text)
            return _ordered_match(prefix, values, lambda pre, t: date_match(pre, s, t))
        if p.type == "number":
            return _ordered_match(prefix, values, lambda pre, x: number_match(pre, text, Fraction(x)))
        if p.type == "quantity":
            return _ordered_match(prefix, values, lambda pre, q: quantity_match(pre, text, q))
        raise ValueError(p.type)

    # -- _include / _revinclude

    def includes(self, type: str, matches: set[str], rules: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """(type, id) of what ``rules`` (``("_include", "Observation:patient")``...) add to ``matches``."""
        seen = {(type, i) for i in matches}
        frontier = set(seen)
        out: set[tuple[str, str]] = set()
        for depth in range(4):
            active = [(n, v) for n, v in rules if depth == 0 or n.endswith(":iterate")]
            added: set[tuple[str, str]] = set()
            for name, value in active:
                parts = value.split(":")
                source, code, only = parts[0], parts[1], parts[2] if len(parts) > 2 else None
                if code == "*":  # every reference parameter of the source (forward includes only here)
                    refs = [q for q in PARAMS[source].values() if q.type == "reference"]
                    for ftype, fid in frontier:
                        if ftype == source:
                            for q in refs:
                                for ref in q.values(self.resources(ftype)[fid]):
                                    t = self.resolve(ref.reference, (only,) if only else q.targets)
                                    if t is not None:
                                        added.add((t["resourceType"], t["id"]))
                    continue
                p = param(source, code)
                for ftype, fid in frontier:
                    if name.startswith("_include") and ftype == source:
                        for ref in p.values(self.resources(ftype)[fid]):
                            t = self.resolve(ref.reference, (only,) if only else p.targets)
                            if t is not None:
                                added.add((t["resourceType"], t["id"]))
                    if name.startswith("_revinclude") and (only is None or ftype == only):
                        me = f"{ftype}/{fid}"
                        for x in self.resources(source).values():
                            if any(ref.reference == me for ref in p.values(x)):
                                added.add((source, x["id"]))
            added -= seen
            seen |= added
            out |= added
            frontier = added
            if not frontier:
                break
        return out

    # -- _sort

    def sort_key(self, type: str, r: dict, code: str, desc: bool) -> Any:
        """The value ``r`` sorts by: the lowest ascending, the highest descending; None if missing."""
        if code == "_id":
            return r["id"]
        p = param(type, code)
        values = p.values(r)
        if not values:
            return None
        if p.type == "string":
            keys = [fold(v) for v in values]
        elif p.type == "date":
            keys = [hi if desc else lo for lo, hi in values]
        elif p.type == "token":
            keys = [t.code for t in values if t.code is not None]
        elif p.type == "number":
            keys = list(values)
        elif p.type == "quantity":
            keys = [Fraction(q.value) * u[0] if q.system == UCUM and (u := ucum(q.code)) else Fraction(q.value)
                    for q in values]
        elif p.type == "reference":
            keys = [ref.reference for ref in values if ref.reference]
        else:
            keys = list(values)
        if not keys:
            return None
        return max(keys) if desc else min(keys)

    def sort_keys(self, type: str, r: dict, sort: list[tuple[str, bool]]) -> tuple:
        return tuple(self.sort_key(type, r, code, desc) for code, desc in sort)

    def order(self, type: str, ids: Iterable[str], sort: list[tuple[str, bool]]) -> list[str]:
        """``ids`` in ``sort`` order, missing values last in either direction (ties: by id)."""
        def cmp(a: str, b: str) -> int:
            ka = self.sort_keys(type, self.resources(type)[a], sort)
            kb = self.sort_keys(type, self.resources(type)[b], sort)
            for (x, y), (_, desc) in zip(zip(ka, kb), sort):
                if x == y:
                    continue
                if x is None:
                    return 1
                if y is None:
                    return -1
                c = -1 if x < y else 1
                return -c if desc else c
            return -1 if a < b else (1 if a > b else 0)

        return sorted(ids, key=cmp_to_key(cmp))


def parse_sort(raw: str) -> list[tuple[str, bool]]:
    return [(k.lstrip("-"), k.startswith("-")) for k in raw.split(",") if k]
