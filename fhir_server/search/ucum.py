"""A small UCUM converter: a quantity's value and unit code -> its canonical (base unit) form.

Covers the units of vitals and labs: SI prefixes on metric atoms; mass, length, volume, time,
amount of substance (mol, eq, osm), pressure (Pa, bar, mm[Hg], cm[H2O]), energy, %, [ppm],
counts (10*3/uL), arbitrary units ([iU], U), customary units ([in_i], [lb_av], ...), annotations
(``{beats}/min`` is ``/min``), and the affine temperatures Cel and [degF] (to K). Factors are
exact fractions, so ``5 mg`` and ``0.005 g`` give the same canonical value. The canonical code
lists the base dimensions in alphabetical order, e.g. ``g.m-3`` for mg/dL and g/L. The search
side uses the same ``canonical`` on query values, so stored and searched forms always agree.

mol is kept as its own dimension (UCUM defines it as a pure number, 6.0221367e23, which would
make mol/L comparable with %); units this module does not know are not convertible (None).
"""

from __future__ import annotations

import functools
import re
from decimal import Decimal
from fractions import Fraction

UCUM = "http://unitsofmeasure.org"

_F = Fraction
_PREFIXES = {
    "Y": _F(10) ** 24, "Z": _F(10) ** 21, "E": _F(10) ** 18, "P": _F(10) ** 15, "T": _F(10) ** 12,
    "G": _F(10) ** 9, "M": _F(10) ** 6, "k": _F(10) ** 3, "h": _F(10) ** 2, "da": _F(10),
    "d": _F(1, 10), "c": _F(1, 100), "m": _F(1, 1000), "u": _F(1, 10**6), "n": _F(1, 10**9),
    "p": _F(1, 10**12), "f": _F(1, 10**15), "a": _F(1, 10**18), "z": _F(1, 10**21), "y": _F(1, 10**24),
}  # fmt: skip

_PRESSURE = {"g": 1, "m": -1, "s": -2}
_ENERGY = {"g": 1, "m": 2, "s": -2}
# atom -> (factor to base units, dimensions, takes SI prefixes)
_ATOMS: dict[str, tuple[Fraction, dict[str, int], bool]] = {
    "m": (_F(1), {"m": 1}, True),
    "g": (_F(1), {"g": 1}, True),
    "s": (_F(1), {"s": 1}, True),
    "K": (_F(1), {"K": 1}, True),
    "rad": (_F(1), {"rad": 1}, True),
    "cd": (_F(1), {"cd": 1}, True),
    "C": (_F(1), {"C": 1}, True),
    "mol": (_F(1), {"mol": 1}, True),
    "eq": (_F(1), {"mol": 1}, True),
    "osm": (_F(1), {"osm": 1}, True),
    "kat": (_F(1), {"mol": 1, "s": -1}, True),
    "U": (_F(1, 60 * 10**6), {"mol": 1, "s": -1}, True),
    "[iU]": (_F(1), {"[iU]": 1}, True),
    "[IU]": (_F(1), {"[iU]": 1}, True),
    "L": (_F(1, 1000), {"m": 3}, True),
    "l": (_F(1, 1000), {"m": 3}, True),
    "t": (_F(10**6), {"g": 1}, True),
    "min": (_F(60), {"s": 1}, False),
    "h": (_F(3600), {"s": 1}, False),
    "d": (_F(86400), {"s": 1}, False),
    "wk": (_F(604800), {"s": 1}, False),
    "mo": (_F(2629800), {"s": 1}, False),
    "mo_j": (_F(2629800), {"s": 1}, False),
    "a": (_F(31557600), {"s": 1}, False),
    "a_j": (_F(31557600), {"s": 1}, False),
    "Hz": (_F(1), {"s": -1}, True),
    "N": (_F(1000), {"g": 1, "m": 1, "s": -2}, True),
    "Pa": (_F(1000), _PRESSURE, True),
    "bar": (_F(10**8), _PRESSURE, True),
    "m[Hg]": (_F(133322) * 1000, _PRESSURE, True),
    "m[H2O]": (_F("9806.65") * 1000, _PRESSURE, True),
    "J": (_F(1000), _ENERGY, True),
    "cal": (_F("4184"), _ENERGY, True),
    "W": (_F(1000), {"g": 1, "m": 2, "s": -3}, True),
    "[in_i]": (_F("0.0254"), {"m": 1}, False),
    "[ft_i]": (_F("0.3048"), {"m": 1}, False),
    "[lb_av]": (_F("453.59237"), {"g": 1}, False),
    "[oz_av]": (_F("28.349523125"), {"g": 1}, False),
    "%": (_F(1, 100), {}, False),
    "[ppth]": (_F(1, 10**3), {}, False),
    "[ppm]": (_F(1, 10**6), {}, False),
    "[ppb]": (_F(1, 10**9), {}, False),
    "10*": (_F(10), {}, False),
    "10^": (_F(10), {}, False),
}
_KELVIN_OFFSET = _F("273.15")
_CELSIUS_OFFSET = Decimal("273.15")
_TOKEN = re.compile(r"([./()])")
_COMPONENT = re.compile(r"^(.*?)([+-]?\d+)?$")

Unit = tuple[Fraction, dict[str, int]]


def canonical(value: Decimal, code: str) -> tuple[Decimal, str] | None:
    """``value code`` in canonical units, or None when ``code`` is not a UCUM unit known here."""
    if code == "Cel":
        return value + _CELSIUS_OFFSET, "K"
    if code == "[degF]":
        return _decimal((_F(value) - 32) * 5 / 9 + _KELVIN_OFFSET), "K"
    found = _conversion(code)
    if found is None:
        return None
    factor, exact, text = found
    if exact is not None:  # a terminating decimal factor: Decimal arithmetic is exact and fast
        return value * exact, text
    return _decimal(_F(value) * factor), text


@functools.lru_cache(maxsize=1024)
def _conversion(code: str) -> tuple[Fraction, Decimal | None, str] | None:
    unit = parse(code)
    if unit is None:
        return None
    factor, dims = unit
    text = ".".join(f"{d}{'' if e == 1 else e}" for d, e in sorted(dims.items())) or "1"
    exact = _decimal(factor)
    return factor, (exact if _F(exact) == factor else None), text


def _decimal(f: Fraction) -> Decimal:
    return Decimal(f.numerator) / Decimal(f.denominator)


@functools.lru_cache(maxsize=1024)
def parse(code: str) -> Unit | None:
    """(factor, dimensions) of a UCUM unit code, or None."""
    text = re.sub(r"\{[^}]*\}", "", code)  # annotations are unity
    tokens = [t for t in _TOKEN.split(text) if t]
    try:
        unit, rest = _term(tokens)
    except (KeyError, ValueError, IndexError):
        return None
    return unit if not rest else None


def _term(tokens: list[str]) -> tuple[Unit, list[str]]:
    factor, dims = _F(1), {}
    op = "."
    if tokens and tokens[0] == "/":
        op, tokens = "/", tokens[1:]
    while True:
        if tokens and tokens[0] == "(":
            (f, d), tokens = _term(tokens[1:])
            if not tokens or tokens[0] != ")":
                raise ValueError("unbalanced parentheses")
            tokens = tokens[1:]
        elif tokens and tokens[0] not in "./)":
            f, d = _component(tokens[0])
            tokens = tokens[1:]
        else:
            f, d = _F(1), {}  # an empty component: a stripped annotation such as /{1.73_m2}
        sign = 1 if op == "." else -1
        factor = factor * f if sign == 1 else factor / f
        for name, exp in d.items():
            dims[name] = dims.get(name, 0) + sign * exp
        if not tokens or tokens[0] == ")":
            return (factor, {k: v for k, v in dims.items() if v}), tokens
        op, tokens = tokens[0], tokens[1:]
        if op not in "./":
            raise ValueError(op)


def _component(text: str) -> Unit:
    if text.isdigit():
        return _F(int(text)), {}
    m = _COMPONENT.match(text)
    atom, exp = m.group(1), int(m.group(2) or 1)
    if not atom:
        raise ValueError(text)
    factor, dims = _simple(atom)
    return factor**exp, {k: v * exp for k, v in dims.items()}


def _simple(atom: str) -> Unit:
    if atom in _ATOMS:
        factor, dims, _ = _ATOMS[atom]
        return factor, dims
    for size in (2, 1):
        prefix, rest = atom[:size], atom[size:]
        if prefix in _PREFIXES and rest in _ATOMS and _ATOMS[rest][2]:
            factor, dims, _ = _ATOMS[rest]
            return _PREFIXES[prefix] * factor, dims
    raise KeyError(atom)
