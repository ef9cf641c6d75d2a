"""Value normalisation shared by index extraction and query parsing (see ``values.py``).

- ``fold``: the string / token-text form (NFKD, combining marks dropped, casefolded, whitespace
  collapsed);
- ``date_range``: the UTC instant range a FHIR date / dateTime / instant covers at its precision;
- ``reference_target``: the stored form of a Reference.reference;
- ``to_decimal``: an exact Decimal of a JSON number (floats via their shortest repr).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

_DATE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?"
)
_UTC = ("Z", "+00:00", "-00:00", None)


def fold(text: str) -> str:
    """Lower-cased, accent-folded, whitespace-collapsed form of ``text``."""
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text)
        text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(text.casefold().split())


def date_range(value: str) -> tuple[str, str] | None:
    """(lo, hi) as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC, or None when ``value`` is not a date.

    ``2024`` covers the year, ``2024-05`` the month, ``2024-05-03`` the day, a time without
    seconds its minute, with seconds that second, with a fraction that fraction's precision.
    Without a time zone the value is taken as UTC.
    """
    m = _DATE.fullmatch(value)
    if m is None:
        return None
    year, month, day, hour, minute, second, frac, tz = m.groups()
    if month is None:
        return f"{year}-01-01T00:00:00.000000Z", f"{year}-12-31T23:59:59.999999Z"
    if not "01" <= month <= "12":
        return None
    last = _last_day(int(year), int(month))
    if day is None:
        return f"{year}-{month}-01T00:00:00.000000Z", f"{year}-{month}-{last:02d}T23:59:59.999999Z"
    if not 1 <= int(day) <= last:
        return None
    date = f"{year}-{month}-{day}"
    if hour is None:
        return f"{date}T00:00:00.000000Z", f"{date}T23:59:59.999999Z"
    if hour > "23" or minute > "59" or (second or "00") > "59":
        return None
    if second is None:
        lo, hi = "00.000000", "59.999999"
    elif frac is None:
        lo, hi = f"{second}.000000", f"{second}.999999"
    else:
        frac = frac[:6]
        lo, hi = f"{second}.{frac.ljust(6, '0')}", f"{second}.{frac.ljust(6, '9')}"
    if tz in _UTC:
        minute_utc = f"{date}T{hour}:{minute}"
    else:  # offsets are whole minutes: only the part up to the minute moves
        sign = 1 if tz[0] == "+" else -1
        offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])) * sign
        try:
            local = datetime(int(year), int(month), int(day), int(hour), int(minute))
            minute_utc = (local - offset).isoformat(timespec="minutes")
        except OverflowError:  # at the calendar's ends: keep the local time
            minute_utc = f"{date}T{hour}:{minute}"
    return f"{minute_utc}:{lo}Z", f"{minute_utc}:{hi}Z"


def _last_day(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def reference_target(reference: str) -> str | None:
    """``Type/id`` for a relative reference (history part dropped), absolute ones as given.

    Contained (``#id``) and conditional (``Type?query``) references are not stored: None.
    """
    if not reference or reference[0] == "#" or "?" in reference:
        return None
    if "/_history/" in reference and "://" not in reference:
        return reference.split("/_history/", 1)[0]
    return reference


def to_decimal(number: object) -> Decimal | None:
    """A JSON number as an exact Decimal (booleans and non-numbers: None)."""
    kind = type(number)
    if kind is int:
        return Decimal(number)
    if kind is float:
        return Decimal(repr(number))
    if kind is Decimal:
        return number
    if kind is str:
        try:
            value = Decimal(number)
        except InvalidOperation:
            return None
        return value if value.is_finite() else None
    return None
