"""FHIR date/dateTime/instant text -> the UTC instant range it covers.

``2024`` covers the whole year, ``2024-05`` the month, ``2024-05-03`` the day, a dateTime to the
minute the minute, to the second the second, with fractions the exact instant. Values without a
timezone are taken as UTC. The range is returned as two fixed-width strings (see values.py) so
string comparison is time comparison on both adapters.
"""

from __future__ import annotations

import calendar
import re
from datetime import datetime, timedelta, timezone

_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2})(?::(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)

def date_range(text: str) -> tuple[str, str] | None:
    """The (lo, hi) instant range of a FHIR date/dateTime/instant, or None if it is not one."""
    m = _DATE.match(text)
    if not m:
        return None
    g = m.groupdict()
    try:
        year = int(g["y"])
        if g["m"] is None:
            return f"{year:04d}-01-01T00:00:00.000000Z", f"{year:04d}-12-31T23:59:59.999999Z"
        month = int(g["m"])
        if g["d"] is None:
            last = calendar.monthrange(year, month)[1]
            return f"{year:04d}-{month:02d}-01T00:00:00.000000Z", f"{year:04d}-{month:02d}-{last:02d}T23:59:59.999999Z"
        day = int(g["d"])
        tz = _tz(g["tz"])
        if g["H"] is None:
            start = datetime(year, month, day, tzinfo=tz)
            step = timedelta(days=1)
        else:
            hour, minute = int(g["H"]), int(g["M"] or 0)
            if g["M"] is None:
                start, step = datetime(year, month, day, hour, tzinfo=tz), timedelta(hours=1)
            elif g["S"] is None:
                start, step = datetime(year, month, day, hour, minute, tzinfo=tz), timedelta(minutes=1)
            else:
                frac = g["f"] or ""
                micro = int((frac + "000000")[:6]) if frac else 0
                start = datetime(year, month, day, hour, minute, int(g["S"]), micro, tzinfo=tz)
                step = timedelta(microseconds=1) if len(frac) >= 6 else timedelta(microseconds=10 ** (6 - len(frac)))
        end = start + step - timedelta(microseconds=1)
        return _utc(start), _utc(end)
    except (ValueError, OverflowError):
        return None


def _tz(text: str | None) -> timezone:
    if not text or text == "Z":
        return timezone.utc
    sign = 1 if text[0] == "+" else -1
    return timezone(sign * timedelta(hours=int(text[1:3]), minutes=int(text[4:6])))


def _utc(dt: datetime) -> str:
    try:
        dt = dt.astimezone(timezone.utc)
    except OverflowError:  # 0001-01-01 with a positive offset: clamp at the calendar's start
        dt = dt.replace(tzinfo=None)
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
        f".{dt.microsecond:06d}Z"
    )


def now_instant() -> str:
    """The current time as a FHIR instant in UTC with microseconds (used for meta.lastUpdated)."""
    return _utc(datetime.now(timezone.utc))
