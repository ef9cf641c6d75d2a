"""The bytes a protocol's signers sign: RFC 8785 (JCS) canonical JSON of its document.

The document (``document.assemble``: the Composition and what it references) is reduced to what
the signature attests, the content, so that the same content always gives the same bytes:

- the Bundle keeps only ``resourceType`` and ``type`` (``document``) and its entries'
  ``resource``: ``Bundle.id``, ``meta``, ``identifier`` and ``timestamp`` change with every
  generation, ``entry.fullUrl`` with the server's base URL, and ``signature`` holds signatures;
- each resource loses its ``meta`` (version, time, the server's access tags);
- the Composition and the DiagnosticReport lose ``status``: their workflow state, which the last
  signature itself changes from ``preliminary`` to ``final``.

Everything else (ids, narrative, sections, the patient, the consultants) is signed: changing any
of it after signing fails ``$verify-signatures``.
"""

from __future__ import annotations

import orjson
import rfc8785

from fhir_server.storage.port import Stored

WORKFLOW = {"Composition": ("status",), "DiagnosticReport": ("status",)}


def content(resource: dict) -> dict:
    """A resource as its signature attests it."""
    left_out = ("meta", *WORKFLOW.get(resource.get("resourceType"), ()))
    return {k: v for k, v in resource.items() if k not in left_out}


def signed_bytes(resources: list[Stored]) -> bytes:
    view = {"resourceType": "Bundle", "type": "document",
            "entry": [{"resource": content(orjson.loads(s.json))} for s in resources]}
    return rfc8785.dumps(view)


def same_content(a: Stored, b: Stored) -> bool:
    return rfc8785.dumps(content(orjson.loads(a.json))) == rfc8785.dumps(content(orjson.loads(b.json)))
