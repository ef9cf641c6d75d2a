"""OperationOutcome errors: one exception, small factories, one status table.

Every error the server answers with is an ``OperationOutcomeError``; the app-level
handler (``fhir_server.app``) turns it into an ``OperationOutcome`` response.
"""

from __future__ import annotations

from typing import Iterable

# FHIR issue-type code -> HTTP status used when the factory does not say otherwise.
STATUS_BY_CODE: dict[str, int] = {
    "invalid": 400,
    "structure": 400,
    "required": 400,
    "value": 400,
    "invariant": 400,
    "security": 403,
    "login": 401,
    "unknown": 401,
    "expired": 401,
    "forbidden": 403,
    "suppressed": 403,
    "processing": 422,
    "not-supported": 400,
    "duplicate": 409,
    "multiple-matches": 412,
    "not-found": 404,
    "deleted": 410,
    "too-long": 413,
    "code-invalid": 400,
    "extension": 400,
    "too-costly": 400,
    "business-rule": 422,
    "conflict": 409,
    "transient": 503,
    "lock-error": 409,
    "no-store": 500,
    "exception": 500,
    "timeout": 504,
    "incomplete": 400,
    "throttled": 429,
    "informational": 200,
}


def issue(
    code: str,
    diagnostics: str,
    expression: str | Iterable[str] | None = None,
    severity: str = "error",
) -> dict:
    """One OperationOutcome.issue as FHIR JSON."""
    out: dict = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        out["expression"] = [expression] if isinstance(expression, str) else list(expression)
    return out


def outcome(issues: list[dict]) -> dict:
    return {"resourceType": "OperationOutcome", "issue": issues}


class OperationOutcomeError(Exception):
    """An error answered as an OperationOutcome with an HTTP status."""

    def __init__(self, issues: list[dict], status: int | None = None, headers: dict | None = None):
        self.issues = issues
        self.status = status or STATUS_BY_CODE.get(issues[0]["code"], 400)
        self.headers = headers or {}
        super().__init__("; ".join(i.get("diagnostics", i["code"]) for i in issues))

    def outcome(self) -> dict:
        return outcome(self.issues)


def _err(code: str, status: int | None = None):
    def factory(diagnostics: str, expression: str | Iterable[str] | None = None, **kw) -> OperationOutcomeError:
        return OperationOutcomeError([issue(code, diagnostics, expression)], status=kw.get("status", status), headers=kw.get("headers"))

    factory.__name__ = code.replace("-", "_")
    return factory


invalid = _err("invalid")                  # 400: malformed request or syntax
structure = _err("structure")              # 400: malformed JSON / wrong shape
unprocessable = _err("processing", 422)    # 422: well-formed but fails validation rules
not_found = _err("not-found")              # 404
gone = _err("deleted")                     # 410
conflict = _err("conflict")                # 409
precondition_failed = _err("conflict", 412)
multiple_matches = _err("multiple-matches")  # 412
not_supported = _err("not-supported")      # 400 unless told otherwise
too_long = _err("too-long")                # 413
forbidden = _err("forbidden")              # 403
too_costly = _err("too-costly")            # 400
exception = _err("exception")              # 500
