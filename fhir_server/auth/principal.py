"""Who is calling: the checked access token's subject, client, scopes and launch context."""

from __future__ import annotations

from dataclasses import dataclass, field

from fhir_server.auth.scopes import Scopes, parse


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    client_id: str
    scopes: Scopes
    fhir_user: str | None = None  # "Practitioner/1", "Patient/2", "PractitionerRole/3", ...
    patient: str | None = None  # the launch context's patient id (patient/ scopes apply to it)
    encounter: str | None = None
    fhir_context: tuple[dict, ...] = ()
    token_id: str | None = None  # jti
    expires: float = 0.0
    issuer: str = ""
    claims: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def admin(self) -> bool:
        """A system client granted every interaction on every type (``system/*.*``, ``system/*.cruds``)."""
        return any(g.context == "system" and g.type == "*" and len(g.letters) == 5 and not g.constraint
                   for g in self.scopes.grants)

    @property
    def user_type(self) -> str | None:
        return self.fhir_user.split("/", 1)[0] if self.fhir_user else None

    @classmethod
    def from_claims(cls, claims: dict) -> "Principal":
        fhir_context = claims.get("fhirContext") or ()
        return cls(
            subject=str(claims.get("sub") or claims.get("client_id") or ""),
            client_id=str(claims.get("client_id") or claims.get("azp") or ""),
            scopes=parse(claims.get("scope") if isinstance(claims.get("scope"), str) else " ".join(claims.get("scope") or [])),
            fhir_user=_relative(claims.get("fhirUser")),
            patient=claims.get("patient") if isinstance(claims.get("patient"), str) else None,
            encounter=claims.get("encounter") if isinstance(claims.get("encounter"), str) else None,
            fhir_context=tuple(c for c in fhir_context if isinstance(c, dict)) if isinstance(fhir_context, list) else (),
            token_id=claims.get("jti"),
            expires=float(claims.get("exp") or 0),
            issuer=str(claims.get("iss") or ""),
            claims=claims,
        )


def _relative(reference) -> str | None:
    """``fhirUser`` may be absolute (``https://host/fhir/Practitioner/1``): keep ``Type/id``."""
    if not isinstance(reference, str) or "/" not in reference:
        return None
    parts = reference.rstrip("/").split("/")
    return f"{parts[-2]}/{parts[-1]}"
