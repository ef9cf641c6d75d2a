"""Detached JWS signatures of a protocol (RU-57, RU-25, KZ-3): the signer's key, the check, and
the Provenance that keeps each signature.

A signature is a compact JWS with a detached payload (RFC 7515 appendix F: ``header..signature``)
over the protocol's canonical bytes (``canonical``), made by the signer with their own private
key: the server never holds one. Its public key comes from

- the JWS header's ``x5c``: the signer's certificate (chain) in base64 DER. The leaf must be
  valid at signing time, each certificate of the chain must be signed by the next one, and a
  certificate naming a SNILS (OID 1.2.643.100.3, as Russian qualified certificates do) must name
  the signing Practitioner's SNILS when the Practitioner records one. Its
  serial number, owner (subject), issuer and validity are recorded with the signature (KZ-3).
  Checking the chain up to an accredited CA's root (a qualified signature) needs the list of
  trusted roots: not configured yet.
- or ``kid``: a key registered for the signer, the extension ``SIGNING_KEY`` on the
  Practitioner (for a PractitionerRole, its practitioner) or on the Organization (its seal),
  ``valueString`` a public JWK with that ``kid``. The JWK is recorded with the signature.

Only asymmetric algorithms are accepted. Each signature is a Provenance whose target is the
Composition version signed, followed by the version of every other resource of the document
signed, so that ``$verify-signatures`` can tell "the document changed since" from "the
signature is wrong".
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timezone

import orjson
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from jwcrypto import jwk, jws

from fhir_server.errors import invalid, unprocessable
from fhir_server.search.plan import parse_query
from fhir_server.storage.port import Stored
from operations.consult.codes import PARTICIPANT_TYPE
from operations.consult.deadline import instant
from profiles import CANONICAL, SNILS_SYSTEM

E1762 = "urn:iso-astm:E1762-95:2013"
TYPES = {  # ISO-ASTM E1762-95 signature types (FHIR's signature-type value set)
    "1.2.840.10065.1.12.1.1": "Author's Signature", "1.2.840.10065.1.12.1.2": "Coauthor's Signature",
    "1.2.840.10065.1.12.1.3": "Co-participant's Signature", "1.2.840.10065.1.12.1.5": "Verification Signature",
    "1.2.840.10065.1.12.1.6": "Validation Signature", "1.2.840.10065.1.12.1.13": "Review Signature",
}
AUTHOR, CO_PARTICIPANT, VALIDATION = "1.2.840.10065.1.12.1.1", "1.2.840.10065.1.12.1.3", "1.2.840.10065.1.12.1.6"
ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})
SIGNING_KEY = f"{CANONICAL}/StructureDefinition/signing-key"
CERTIFICATE = f"{CANONICAL}/StructureDefinition/signature-certificate"
SIGNATURE = "Parameters.parameter.where(name='signature')"
SNILS_OID = x509.ObjectIdentifier("1.2.643.100.3")


@dataclass(slots=True)
class Key:
    jwk: jwk.JWK
    certificate: dict  # serial, subject, issuer, notBefore, notAfter (x5c) or kid and jwk (registered)
    not_before: datetime | None = None
    not_after: datetime | None = None


def coding(code: str) -> dict:
    return {"system": E1762, "code": code, "display": TYPES[code]}


def parse(compact: str, where: str = SIGNATURE) -> jws.JWS:
    """A detached compact JWS (``header..signature``) with an accepted algorithm."""
    parts = compact.strip().split(".") if isinstance(compact, str) else []
    if len(parts) != 3 or parts[1] != "" or not parts[0] or not parts[2]:
        raise invalid("The signature must be a compact JWS with a detached payload: <header>..<signature>", where)
    token = jws.JWS()
    try:
        token.deserialize(compact.strip())
        alg = token.jose_header.get("alg")
    except Exception as exc:  # noqa: BLE001 - jwcrypto raises several kinds for bad input
        raise invalid(f"The signature is not a JWS: {exc}", where) from None
    if alg not in ALGORITHMS:
        raise invalid(f"Signature algorithm {alg!r} is not accepted (one of {', '.join(sorted(ALGORITHMS))})", where)
    return token


def _chain(header: dict, where: str) -> list[x509.Certificate]:
    try:
        return [x509.load_der_x509_certificate(base64.b64decode(c)) for c in header["x5c"]]
    except Exception:  # noqa: BLE001
        raise invalid("The JWS header's x5c is not a list of base64 DER certificates", where) from None


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    public = issuer.public_key()
    try:
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        else:
            public.verify(cert.signature, cert.tbs_certificate_bytes)
        return True
    except Exception:  # noqa: BLE001 - InvalidSignature or an unsupported key
        return False


def _digits(value: str) -> str:
    return "".join(c for c in value if c.isdigit())


def _same_person(cert: x509.Certificate, holder: dict | None, where: str) -> None:
    """A certificate naming a SNILS (a Russian qualified certificate, OID 1.2.643.100.3) signs
    only for the Practitioner with that SNILS, when the Practitioner records one."""
    named = {_digits(a.value) for a in cert.subject.get_attributes_for_oid(SNILS_OID) if isinstance(a.value, str)}
    known = {_digits(str(i.get("value", ""))) for i in (holder or {}).get("identifier") or ()
             if isinstance(i, dict) and i.get("system") == SNILS_SYSTEM}
    if named and known and not named & known:
        raise unprocessable("The certificate belongs to another person: its SNILS is not the signer's", where)


def key_of(token: jws.JWS, holder: dict | None, where: str = SIGNATURE) -> Key:
    """The public key a signature names: its certificate (x5c) or the holder's registered key (kid)."""
    header = token.jose_header
    if header.get("x5c"):
        chain = _chain(header, where)
        for cert, issuer in zip(chain, chain[1:]):
            if not _signed_by(cert, issuer):
                raise unprocessable("The certificate chain in x5c is broken: a certificate is not signed by the next",
                                    where)
        leaf = chain[0]
        _same_person(leaf, holder, where)
        info = {"serial": format(leaf.serial_number, "X"), "subject": leaf.subject.rfc4514_string(),
                "issuer": leaf.issuer.rfc4514_string(),
                "notBefore": instant(leaf.not_valid_before_utc), "notAfter": instant(leaf.not_valid_after_utc)}
        return Key(jwk.JWK.from_pyca(leaf.public_key()), info, leaf.not_valid_before_utc, leaf.not_valid_after_utc)
    kid = header.get("kid")
    for ext in (holder or {}).get("extension") or ():
        if ext.get("url") != SIGNING_KEY or not isinstance(ext.get("valueString"), str):
            continue
        try:
            key = jwk.JWK.from_json(ext["valueString"])
        except Exception:  # noqa: BLE001 - a malformed registration is skipped
            continue
        if kid and key.get("kid") == kid and not key.has_private:
            return Key(key, {"kid": kid, "jwk": key.export_public()})
    raise unprocessable(f"The signature names no certificate (x5c) and no key registered for the signer "
                        f"(kid {kid!r} is not among the {SIGNING_KEY} extensions)", where)


def recorded_key(token: jws.JWS, signature: dict) -> Key:
    """The key of a stored signature: its certificate, or the registered JWK recorded with it."""
    if token.jose_header.get("x5c"):
        return key_of(token, None)
    info = certificate_of(signature)
    return Key(jwk.JWK.from_json(info["jwk"]), info)


def verifies(token: jws.JWS, key: Key, payload: bytes) -> bool:
    try:
        token.verify(key.jwk, detached_payload=payload)
        return True
    except Exception:  # noqa: BLE001 - InvalidJWSSignature and friends
        return False


def valid_at(key: Key, when: datetime) -> bool:
    return (key.not_before is None or key.not_before <= when) and (key.not_after is None or when <= key.not_after)


def certificate_extension(info: dict) -> dict:
    parts = [{"url": k, "valueString": v} for k, v in info.items() if k not in ("notBefore", "notAfter")]
    if "notBefore" in info:
        parts.append({"url": "validity", "valuePeriod": {"start": info["notBefore"], "end": info["notAfter"]}})
    return {"url": CERTIFICATE, "extension": parts}


def certificate_of(signature: dict) -> dict:
    out: dict = {}
    for ext in signature.get("extension") or ():
        if ext.get("url") == CERTIFICATE:
            for part in ext.get("extension") or ():
                if part.get("url") == "validity":
                    out.update(notBefore=part["valuePeriod"].get("start"), notAfter=part["valuePeriod"].get("end"))
                else:
                    out[part["url"]] = part.get("valueString")
    return out


def provenance(composition: Stored, others: list[Stored], signer: str, on_behalf: str | None, type: str,
               compact: str, info: dict, now: datetime, client: str | None = None) -> dict:
    """The Provenance of one signature. A seal's agent is the system client that applied it, on
    behalf of the organisation (an Organization as agent would make all its staff participants)."""
    who = {"identifier": {"system": "urn:telemed:client", "value": client}} if client else {"reference": signer}
    agent = {"type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "attester"}]}, "who": who}
    if client:
        agent["onBehalfOf"] = {"reference": signer}
    elif on_behalf and on_behalf != signer:
        agent["onBehalfOf"] = {"reference": on_behalf}
    return {
        "resourceType": "Provenance",
        "target": [{"reference": f"{s.type}/{s.id}/_history/{s.version}"} for s in [composition, *others]],
        "recorded": instant(now), "agent": [agent],
        "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                 "code": "AUTHEN", "display": "authenticator"}], "text": "Composition/$sign"},
        "signature": [{"type": [coding(type)], "when": instant(now), "who": {"reference": signer},
                       "targetFormat": "application/json", "sigFormat": "application/jose",
                       "data": base64.b64encode(compact.encode()).decode(), "extension": [certificate_extension(info)]}],
    }


async def of(svc, composition_id: str) -> list[tuple[Stored, dict]]:
    """The signature Provenances of a protocol, oldest first."""
    query = parse_query("Provenance", [("target", f"Composition/{composition_id}")], strict=True)
    page = await svc.store.search(query, count=svc.settings.max_chain_ids, cursor=None, total=False)
    found = [(s, orjson.loads(s.json)) for s in page.entries]
    return sorted(((s, p) for s, p in found if p.get("signature")), key=lambda item: item[1].get("recorded") or "")


def signer_of(provenance: dict) -> str | None:
    return ((provenance.get("signature") or [{}])[0].get("who") or {}).get("reference")


def now() -> datetime:
    return datetime.now(timezone.utc)
