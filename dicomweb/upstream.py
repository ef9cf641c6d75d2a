"""The HTTP client to the PACS (QIDO-RS, metadata, STOW-RS): query strings built by hand,
errors mapped. WADO-RS bodies take the raw path of ``relay``.

Orthanc 1.10 does not percent-decode some query values (``PatientName=A%5EB`` matches nothing,
``limit=%32`` is a 400; ../shared/orthanc.md), so ``query_string`` leaves DICOM's matching
characters (``^ * ? , . -``) as they are and turns spaces into the single-character wildcard.
A PACS that cannot be reached is 502; one that does not answer within the timeout (for the
connection, or for the next bytes of an answer) is 504; neither ever hangs the caller.
"""

from __future__ import annotations

import logging
from urllib.parse import quote, urlsplit

import httpx

from fhir_server.errors import OperationOutcomeError, issue

log = logging.getLogger(__name__)

# Characters sent as they are besides letters, digits and ``-._~``; every other byte is
# percent-encoded (spaces become ``?``).
_SAFE = "^*?,:/@!$'()"
# Answer headers passed on to the caller as they are (the body's bytes are not changed).
PASSED = ("content-type", "content-length", "content-encoding", "content-disposition", "content-location",
          "warning")


def quote_value(value: str) -> str:
    return quote(value.replace(" ", "?"), safe=_SAFE)


def query_string(items: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote_value(k)}={quote_value(v)}" for k, v in items)


def bad_gateway(text: str) -> OperationOutcomeError:
    return OperationOutcomeError([issue("exception", text)], status=502)


def gateway_timeout(text: str) -> OperationOutcomeError:
    return OperationOutcomeError([issue("timeout", text)], status=504)


class Upstream:
    def __init__(self, url: str, username: str, password: str, timeout: float):
        self.url = url.rstrip("/")
        self.root = urlsplit(self.url).path.rstrip("/")  # e.g. /dicom-web
        auth = httpx.BasicAuth(username, password) if username else None
        self.client = httpx.AsyncClient(
            auth=auth, timeout=httpx.Timeout(timeout), follow_redirects=False,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            # JSON comes back plain: it is parsed and rewritten here; binary bodies pass as sent.
            headers={"Accept-Encoding": "identity"})

    async def open(self, method: str, path: str, items: list[tuple[str, str]] = (), headers: dict | None = None,
                   content=None) -> httpx.Response:
        """Send a request to ``{url}{path}`` and return the answer with its body unread (streaming)."""
        url = self.url + path
        if items:
            url += "?" + query_string(list(items))
        request = self.client.build_request(method, url, headers=headers, content=content)
        try:
            return await self.client.send(request, stream=True)
        except httpx.TimeoutException:
            raise gateway_timeout(f"The PACS did not answer {method} {path} in time") from None
        except httpx.HTTPError as exc:
            raise bad_gateway(f"The PACS could not be reached ({type(exc).__name__})") from None

    async def read(self, response: httpx.Response) -> bytes:
        try:
            return await response.aread()
        except httpx.TimeoutException:
            raise gateway_timeout("The PACS stopped sending its answer") from None
        except httpx.HTTPError as exc:
            raise bad_gateway(f"The PACS's answer broke off ({type(exc).__name__})") from None
        finally:
            await response.aclose()

    async def close(self) -> None:
        await self.client.aclose()


def failure(status: int, body: bytes, what: str) -> OperationOutcomeError:
    """The error for a non-2xx answer: the PACS's own 4xx as they are (404, 400, 406, 409,
    415), 502 for its 5xx and for a refusal of the proxy's credentials."""
    text = body[:2000].decode("utf-8", "replace")
    if status in (401, 403, 407):
        log.error("the PACS refused the proxy's credentials (%d) on %s", status, what)
        return bad_gateway("The PACS refused the proxy's credentials")
    if status >= 500 or status < 400:
        return bad_gateway(f"The PACS failed on {what} ({status}): {_detail(text)}")
    code = {404: "not-found", 409: "conflict", 406: "not-supported", 415: "not-supported"}.get(status, "invalid")
    return OperationOutcomeError([issue(code, f"The PACS answered {status} to {what}: {_detail(text)}")],
                                 status=status)


def _detail(text: str) -> str:
    """Orthanc's error JSON carries a ``Details`` or ``Message``; else the text itself."""
    import orjson

    try:
        body = orjson.loads(text)
        if isinstance(body, dict):
            return str(body.get("Details") or body.get("Message") or text)
    except orjson.JSONDecodeError:
        pass
    return text.strip() or "no details"
