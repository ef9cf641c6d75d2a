"""Signing on the client's side for the protocol tests: keys and certificates made here, detached
JWS over the bytes ``GET $sign`` answers (the server never sees a private key)."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from jwcrypto import jwk, jws

from operations.consult.signatures import SIGNING_KEY, SNILS_OID
from tests.operations.consult.conftest import as_, parameters
from tests.tokens import auth

ICD10 = "http://hl7.org/fhir/sid/icd-10"
FORM = {"complaints": "Headache, fatigue, poor sleep", "anamnesis": "Stroke in 2022; rehabilitation",
        "diagnosis": {"system": ICD10, "code": "I69.3"}, "conclusion": "Marked improvement",
        "examination-plan": "MRI of the brain in 3 months", "treatment": "Continue rehabilitation",
        "recommendations": "Neurologist follow-up"}


class Signer:
    """A private key held by the test (RSA or EC), with a certificate when asked."""

    def __init__(self, name: str, kind: str = "EC", valid_days: int = 365, starts_in_days: int = -1,
                 snils: str | None = None):
        self.private = ec.generate_private_key(ec.SECP256R1()) if kind == "EC" else rsa.generate_private_key(65537, 2048)
        self.alg = "ES256" if kind == "EC" else "RS256"
        self.kid = f"{name}-key"
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                             *([x509.NameAttribute(SNILS_OID, snils)] if snils else [])])
        start = datetime.now(timezone.utc) + timedelta(days=starts_in_days)
        self.cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                     .public_key(self.private.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(start).not_valid_after(start + timedelta(days=valid_days))
                     .sign(self.private, hashes.SHA256()))
        pem = self.private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
        self.jwk = jwk.JWK.from_pem(pem)

    def public_jwk(self) -> str:
        return json.dumps({**json.loads(self.jwk.export_public()), "kid": self.kid})

    def registration(self) -> dict:
        """The extension registering this key on a Practitioner or Organization."""
        return {"url": SIGNING_KEY, "valueString": self.public_jwk()}

    def sign(self, payload: bytes, x5c: bool = True) -> str:
        """A detached compact JWS over ``payload``: its certificate in x5c, or its registered kid."""
        header = {"alg": self.alg}
        if x5c:
            header["x5c"] = [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]
        else:
            header["kid"] = self.kid
        token = jws.JWS(payload)
        token.add_signature(self.jwk, None, header)
        head, _, signature = token.serialize(compact=True).split(".")
        return f"{head}..{signature}"


def system(app) -> dict:
    """The organisation's signing service: a system client."""
    return auth(app, "system/*.*")


async def bytes_to_sign(desk, composition: str, who: str | None) -> tuple[bytes, str]:
    headers = as_(desk.app, who) if who else system(desk.app)
    r = await desk.client.get(f"/{composition}/$sign", headers=headers)
    assert r.status_code == 200, r.text
    return r.content, r.headers["etag"]


async def sign(desk, composition: str, who: str | None, signer: Signer, x5c: bool = True, **values):
    """GET the bytes, sign them here, POST the JWS (``who`` None: the system client's seal)."""
    payload, _ = await bytes_to_sign(desk, composition, who)
    headers = as_(desk.app, who) if who else system(desk.app)
    return await desk.client.post(f"/{composition}/$sign", headers=headers,
                                  json=parameters(signature=signer.sign(payload, x5c), **values))


async def accepted(desk, sr: str = "sr1") -> dict:
    task = await desk.submit(sr)
    r = await desk.op("consultant1", f"Task/{task['id']}/$accept")
    assert r.status_code == 200, r.text
    return r.json()


async def completed_form(desk, sr: str = "sr1", **form) -> tuple[dict, str, str]:
    """An accepted consultation whose owner (consultant1) sent the form: (Task, report, protocol)."""
    task = await accepted(desk, sr)
    r = await desk.op("consultant1", f"Task/{task['id']}/$complete", **(form or FORM))
    assert r.status_code == 200, r.text
    done = r.json()
    outputs = {o["type"]["coding"][0]["code"]: o["valueReference"]["reference"] for o in done["output"]}
    return done, outputs["conclusion"], outputs["protocol"]
