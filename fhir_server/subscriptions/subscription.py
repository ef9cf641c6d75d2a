"""A Subscription resource as this server reads it (Subscriptions R5 Backport IG, R4 form).

- ``criteria``: the topic's canonical URL (``topics.py``); its extension
  ``backport-filter-criteria`` (any number) narrows it: ``Task?owner=Practitioner/1`` (token and
  reference parameters the topic allows, commas for OR).
- ``channel.type``: ``rest-hook`` (``endpoint`` an http(s) URL, ``header`` lines sent with every
  notification), ``websocket`` (no endpoint: ``$get-ws-binding-token``), or ``email``
  (``endpoint`` a ``mailto:`` address). ``channel.payload``: ``application/fhir+json``;
  its extension ``backport-payload-content``: ``empty``, ``id-only`` (default) or
  ``full-resource``. Channel extensions: ``backport-heartbeat-period`` (seconds),
  ``backport-timeout`` (seconds per delivery), ``backport-max-count`` (events per notification;
  without it, whatever is pending up to ``MAX_EVENTS``),
  and ours, ``subscription-hmac-secret``: the key of the ``X-Telemed-Signature: sha256=<hex>``
  header (HMAC-SHA256 of the body) on rest-hook deliveries.
- ``status`` is the server's: a new or changed channel is ``requested`` until the handshake
  succeeds (then ``active``); ``error`` (with ``error``) while deliveries fail; a client may set
  ``off`` (deliveries stop, events are still recorded) and ``requested`` (try again).

Who created a Subscription owns it: only its owner (and system clients) can read, change or
search it. The server stamps the owner as a security tag and the creator's grant (user, client,
scopes, launch patient) as the extension ``subscription-grant``; deliveries check the focus
resource against that grant when they are sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

import orjson

from fhir_server.auth.principal import Principal
from fhir_server.auth.scopes import parse as parse_scopes
from fhir_server.errors import invalid
from fhir_server.search.params import params_for
from fhir_server.subscriptions.topics import BY_URL, Topic
from profiles import CANONICAL

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
FILTER = f"{BACKPORT}/backport-filter-criteria"
CONTENT = f"{BACKPORT}/backport-payload-content"
HEARTBEAT = f"{BACKPORT}/backport-heartbeat-period"
TIMEOUT = f"{BACKPORT}/backport-timeout"
MAX_COUNT = f"{BACKPORT}/backport-max-count"
OWNER = f"{CANONICAL}/CodeSystem/subscription-owner"
GRANT = f"{CANONICAL}/StructureDefinition/subscription-grant"
SECRET = f"{CANONICAL}/StructureDefinition/subscription-hmac-secret"
CHANNELS = ("rest-hook", "websocket", "email")
CONTENTS = ("empty", "id-only", "full-resource")
PAYLOADS = ("application/fhir+json", "application/json")
DEFAULT_TIMEOUT = 10
MAX_EVENTS = 100


@dataclass(frozen=True, slots=True)
class Parsed:
    id: str
    topic: Topic
    filters: tuple[tuple[str, str, str], ...]  # (type, parameter, value)
    channel: str
    endpoint: str
    content: str
    headers: tuple[tuple[str, str], ...]
    heartbeat: int | None
    timeout: int
    max_count: int
    secret: str | None
    status: str
    owner: Principal | None
    version: int = 0


def _ext(element: dict, url: str) -> list:
    return [e for e in element.get("extension") or () if isinstance(e, dict) and e.get("url") == url]


def _one(element: dict, url: str, key: str, where: str):
    found = _ext(element, url)
    if not found:
        return None
    if len(found) > 1 or key not in found[0]:
        raise invalid(f"{where}: extension {url} must appear once with {key}", where)
    return found[0][key]


def _positive(value, where: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise invalid(f"{where} must be a positive integer", where)
    return value


def _filters(topic: Topic, criteria: dict) -> tuple[tuple[str, str, str], ...]:
    out = []
    for e in _ext(criteria, FILTER):
        text = e.get("valueString")
        where = "Subscription.criteria.extension(backport-filter-criteria)"
        if not isinstance(text, str) or "?" not in text:
            raise invalid(f"{where}: a filter is 'Type?param=value', e.g. 'Task?owner=Practitioner/1'", where)
        type, query = text.split("?", 1)
        if type not in topic.filters:
            raise invalid(f"{where}: topic {topic.name} is about {', '.join(topic.filters)}, not {type}", where)
        for name, value in parse_qsl(query, keep_blank_values=True):
            if name not in topic.filters[type]:
                raise invalid(f"{where}: topic {topic.name} filters {type} by {', '.join(topic.filters[type])}; "
                              f"not by '{name}'", where)
            if params_for(type)[name].type not in ("token", "reference") or not value:
                raise invalid(f"{where}: '{name}' needs a value", where)
            out.append((type, name, value))
    return tuple(out)


def parse(resource: dict) -> Parsed:
    """The Subscription's meaning; 400 naming the element when it is not one this server serves."""
    criteria = resource.get("criteria")
    topic = BY_URL.get(criteria) if isinstance(criteria, str) else None
    if topic is None:
        raise invalid(f"Subscription.criteria must be the canonical URL of one of this server's topics "
                      f"({', '.join(sorted(BY_URL))}); it is {criteria!r}", "Subscription.criteria")
    filters = _filters(topic, (resource.get("_criteria") or {}) if isinstance(resource.get("_criteria"), dict) else {})
    channel = resource.get("channel") or {}
    kind = channel.get("type")
    if kind not in CHANNELS:
        raise invalid(f"Subscription.channel.type must be one of {', '.join(CHANNELS)}; it is {kind!r}",
                      "Subscription.channel.type")
    endpoint = channel.get("endpoint") or ""
    if kind == "rest-hook" and not endpoint.startswith(("http://", "https://")):
        raise invalid("A rest-hook Subscription needs an http:// or https:// channel.endpoint", "Subscription.channel.endpoint")
    if kind == "email" and not (endpoint.startswith("mailto:") and "@" in endpoint):
        raise invalid("An email Subscription needs a mailto: channel.endpoint", "Subscription.channel.endpoint")
    payload = channel.get("payload")
    if payload is not None and payload not in PAYLOADS:
        raise invalid(f"Subscription.channel.payload must be application/fhir+json; {payload!r} is not served",
                      "Subscription.channel.payload")
    content = _one(channel.get("_payload") or {}, CONTENT, "valueCode", "Subscription.channel.payload") or "id-only"
    if content not in CONTENTS:
        raise invalid(f"backport-payload-content must be one of {', '.join(CONTENTS)}", "Subscription.channel.payload")
    headers = []
    for line in channel.get("header") or ():
        if not isinstance(line, str) or ":" not in line or "\n" in line or "\r" in line:
            raise invalid("Each Subscription.channel.header is one 'Name: value' line", "Subscription.channel.header")
        name, value = line.split(":", 1)
        headers.append((name.strip(), value.strip()))
    secret = _one(channel, SECRET, "valueString", "Subscription.channel.extension")
    return Parsed(
        id=resource.get("id") or "", topic=topic, filters=filters, channel=kind, endpoint=endpoint, content=content,
        headers=tuple(headers),
        heartbeat=_positive(_one(channel, HEARTBEAT, "valueUnsignedInt", "Subscription.channel.extension"),
                            "backport-heartbeat-period"),
        timeout=_positive(_one(channel, TIMEOUT, "valueUnsignedInt", "Subscription.channel.extension"),
                          "backport-timeout") or DEFAULT_TIMEOUT,
        max_count=min(_positive(_one(channel, MAX_COUNT, "valuePositiveInt", "Subscription.channel.extension"),
                                "backport-max-count") or MAX_EVENTS, MAX_EVENTS),
        secret=secret if isinstance(secret, str) else None, status=resource.get("status") or "requested",
        owner=grant_of(resource), version=int((resource.get("meta") or {}).get("versionId") or 0),
    )


def owner_key(who: Principal) -> str:
    return who.fhir_user or f"client/{who.client_id}"


def owner_of(resource: dict) -> str | None:
    for t in (resource.get("meta") or {}).get("security") or ():
        if isinstance(t, dict) and t.get("system") == OWNER:
            return t.get("code")
    return None


def grant_of(resource: dict) -> Principal | None:
    """The creator's grant stamped on the Subscription, as the principal deliveries are checked for."""
    found = _ext(resource, GRANT)
    if not found:
        return None
    parts = {e.get("url"): e.get("valueString") for e in found[0].get("extension") or () if isinstance(e, dict)}
    return Principal(subject=parts.get("subject") or "", client_id=parts.get("client") or "",
                     scopes=parse_scopes(parts.get("scope") or ""), fhir_user=parts.get("fhirUser"),
                     patient=parts.get("patient"))


SETTABLE = ("off", "requested")


def prepare(who: Principal, current: dict | None, resource: dict) -> None:
    """Check a Subscription about to be written and set what the server decides (in place):
    its owner and grant, and its status (``requested`` whenever what it asks for changes)."""
    new = parse(resource)
    status = resource.get("status")
    if current is None:
        resource["status"] = "off" if status == "off" else "requested"
        resource.pop("error", None)
    else:
        old = parse(current)
        asked = (new.topic, new.filters, new.channel, new.endpoint, new.content, new.headers, new.secret)
        had = (old.topic, old.filters, old.channel, old.endpoint, old.content, old.headers, old.secret)
        if status in SETTABLE and status != current.get("status") or asked != had:
            resource["status"] = "off" if status == "off" else "requested"
            resource.pop("error", None)
        else:
            resource["status"] = current.get("status")
            if "error" in current:
                resource["error"] = current["error"]
            else:
                resource.pop("error", None)
    owner = owner_of(current) if current is not None else None
    meta = resource.setdefault("meta", {})
    meta["security"] = [t for t in meta.get("security") or () if not (isinstance(t, dict) and t.get("system") == OWNER)]
    meta["security"].append({"system": OWNER, "code": owner or owner_key(who)})
    if current is not None and owner and _ext(current, GRANT):
        grant = _ext(current, GRANT)[0]
    else:
        fields = {"subject": who.subject, "client": who.client_id, "scope": who.scopes.text,
                  "fhirUser": who.fhir_user, "patient": who.patient}
        grant = {"url": GRANT, "extension": [{"url": k, "valueString": v} for k, v in fields.items() if v]}
    resource["extension"] = [e for e in resource.get("extension") or () if not (isinstance(e, dict) and e.get("url") == GRANT)]
    resource["extension"].append(grant)


def stamp(who: Principal, current, resource: dict) -> None:
    """``prepare`` for a resource about to be written when it is a Subscription (``current``: the
    stored version it replaces, or None)."""
    if resource.get("resourceType") != "Subscription":
        return
    before = orjson.loads(current.json) if current is not None and not current.deleted else None
    prepare(who, before, resource)


def matches(sub: Parsed, type: str, index) -> bool:
    """Whether a ``type`` resource with search values ``index`` passes the Subscription's filters
    (all of them; a comma within one is OR). Filters about another type do not apply."""
    from fhir_server.auth.access import token_matches

    for ftype, name, value in sub.filters:
        if ftype != type:
            continue
        if params_for(type)[name].type == "reference":
            targets = {t for p, t in index.references if p == name}
            if not any(_relative(v) in targets for v in value.split(",")):
                return False
        elif not token_matches(name, value, index):
            return False
    return True


def _relative(reference: str) -> str:
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    return "/".join(parts[-2:])
