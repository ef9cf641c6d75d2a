"""Our implementation guide as FHIR artifacts. ``CANONICAL`` is the base of every canonical URL it defines."""

CANONICAL = "https://telemed-fhir.org/ig"
# The identifier system of SNILS (СНИЛС), the Russian personal insurance number by which the
# national identity system's users are matched to Practitioner and Patient resources (RU-7).
SNILS_SYSTEM = "http://nsi.rosminzdrav.ru/snils"
