"""Our implementation guide as FHIR artifacts. ``CANONICAL`` is the base of every canonical URL it defines;
``PROFILES`` is the folder that holds the artifacts (``<type>-<name>.json``)."""

from pathlib import Path

PROFILES = Path(__file__).resolve().parent

CANONICAL = "https://telemed-fhir.org/ig"
# The identifier system of SNILS (СНИЛС), the Russian personal insurance number by which the
# national identity system's users are matched to Practitioner and Patient resources (RU-7).
SNILS_SYSTEM = "http://nsi.rosminzdrav.ru/snils"
