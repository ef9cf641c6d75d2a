"""The one route table: a line per interaction."""

from __future__ import annotations

from typing import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.convertors import Convertor, register_url_convertor
from starlette.routing import Mount, Route, WebSocketRoute

from dicomweb import qido as dw_qido, stow as dw_stow, wado as dw_wado
from fhir_server import capability, metrics
from fhir_server.auth import admin_api, smart_configuration
from fhir_server.auth.authorize import Authorize
from fhir_server.auth.client_auth import ClientAuth
from fhir_server.auth.introspect import Introspect
from fhir_server.auth.ratelimit import SlidingWindow
from fhir_server.auth.revoke import Revoke
from fhir_server.auth.token_endpoint import TokenEndpoint
from fhir_server.bulk import files as bulk_files, kickoff as bulk_kickoff, status as bulk_status
from fhir_server.interactions import create, delete, history, patch, read, search, transaction, update, vread
from fhir_server.services import Services
from fhir_server.subscriptions import events as sub_events, status as sub_status, websocket as sub_ws
from operations.consult import accept, cancel, provide_info, refuse, request_info, submit, transfer
from operations.consult import claim as consult_claim, route as consult_route
from operations.consult import complete as consult_complete, document as consult_document, sign as consult_sign
from operations.consult import verify_signatures as consult_verify
from operations.consult import journal as consult_journal, weekly_report as consult_weekly_report
from profiles import serving as ig

Handler = Callable[[Request, Services], Awaitable[Response]]


def routes(svc: Services) -> list[Route]:
    def r(path: str, handler: Handler, method: str, name: str) -> Route:
        async def endpoint(request: Request) -> Response:
            return await handler(request, svc)

        return Route(path, endpoint, methods=[method], name=name)

    # The local authorization server's per-process state: the rate limits and fetched client JWKS.
    clients = ClientAuth()
    authorize = Authorize(SlidingWindow(svc.settings.token_rate_limit))
    token = TokenEndpoint(clients, SlidingWindow(svc.settings.token_rate_limit))

    # The convertors keep ``_history``, ``_search`` and ``$operation`` segments from matching ``{id}``.
    return [
        # DICOMweb (dicomweb/): QIDO-RS, WADO-RS and STOW-RS proxied to the PACS, scoped to the
        # studies the caller may see. Study, series and instance paths under /dicomweb, one
        # prefix match away for every request (a viewer sends hundreds per study).
        Mount("/dicomweb", routes=[
            r("/studies", dw_qido.studies, "GET", "qido-studies"),
            r("/series", dw_qido.series, "GET", "qido-series"),
            r("/instances", dw_qido.instances, "GET", "qido-instances"),
            r("/studies/{study}/series", dw_qido.series, "GET", "qido-study-series"),
            r("/studies/{study}/instances", dw_qido.instances, "GET", "qido-study-instances"),
            r("/studies/{study}/series/{series}/instances", dw_qido.instances, "GET", "qido-series-instances"),
            r("/studies", dw_stow.store, "POST", "stow"),
            r("/studies/{study}", dw_stow.store, "POST", "stow-study"),
            r("/studies/{study}", dw_wado.retrieve, "GET", "wado-study"),
            r("/studies/{study}/metadata", dw_wado.metadata, "GET", "wado-study-metadata"),
            r("/studies/{study}/rendered", dw_wado.retrieve, "GET", "wado-study-rendered"),
            r("/studies/{study}/series/{series}", dw_wado.retrieve, "GET", "wado-series"),
            r("/studies/{study}/series/{series}/metadata", dw_wado.metadata, "GET", "wado-series-metadata"),
            r("/studies/{study}/series/{series}/rendered", dw_wado.retrieve, "GET", "wado-series-rendered"),
            r("/studies/{study}/series/{series}/instances/{instance}", dw_wado.retrieve, "GET", "wado-instance"),
            r("/studies/{study}/series/{series}/instances/{instance}/metadata", dw_wado.metadata, "GET",
              "wado-instance-metadata"),
            r("/studies/{study}/series/{series}/instances/{instance}/rendered", dw_wado.retrieve, "GET",
              "wado-instance-rendered"),
            r("/studies/{study}/series/{series}/instances/{instance}/frames/{frames}", dw_wado.retrieve, "GET",
              "wado-frames"),
            r("/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/rendered", dw_wado.retrieve,
              "GET", "wado-frames-rendered"),
            r("/studies/{study}/series/{series}/instances/{instance}/bulk/{bulk:path}", dw_wado.retrieve, "GET",
              "wado-bulkdata"),
        ]),
        # Bulk Data export (fhir_server/bulk): exact paths; ``$`` is in no convertor's alphabet.
        r("/fhir/$export", bulk_kickoff.handle, "GET", "export"),
        r("/fhir/$export", bulk_kickoff.handle, "POST", "export-post"),
        r("/fhir/Patient/$export", bulk_kickoff.handle, "GET", "export-patient"),
        r("/fhir/Patient/$export", bulk_kickoff.handle, "POST", "export-patient-post"),
        r("/fhir/Patient/{id:fhirid}/$export", bulk_kickoff.handle, "GET", "export-patient-instance"),
        r("/fhir/Patient/{id:fhirid}/$export", bulk_kickoff.handle, "POST", "export-patient-instance-post"),
        r("/fhir/Group/{id:fhirid}/$export", bulk_kickoff.handle, "GET", "export-group"),
        r("/fhir/Group/{id:fhirid}/$export", bulk_kickoff.handle, "POST", "export-group-post"),
        r("/fhir/bulk-status/{job}", bulk_status.handle, "GET", "export-status"),
        r("/fhir/bulk-status/{job}", bulk_status.cancel, "DELETE", "export-cancel"),
        r("/fhir/bulk-files/{job}/{name}", bulk_files.handle, "GET", "export-file"),
        # The teleconsultation workflow (operations/consult, docs/workflow.md).
        r("/fhir/ServiceRequest/{id:fhirid}/$submit", submit.handle, "POST", "consult-submit"),
        r("/fhir/Task/{id:fhirid}/$accept", accept.handle, "POST", "consult-accept"),
        r("/fhir/Task/{id:fhirid}/$transfer", transfer.handle, "POST", "consult-transfer"),
        r("/fhir/Task/{id:fhirid}/$request-info", request_info.handle, "POST", "consult-request-info"),
        r("/fhir/Task/{id:fhirid}/$provide-info", provide_info.handle, "POST", "consult-provide-info"),
        r("/fhir/Task/{id:fhirid}/$refuse", refuse.handle, "POST", "consult-refuse"),
        r("/fhir/Task/{id:fhirid}/$cancel", cancel.handle, "POST", "consult-cancel"),
        r("/fhir/Task/$journal", consult_journal.handle, "GET", "consult-journal"),
        r("/fhir/Task/$journal", consult_journal.handle, "POST", "consult-journal-post"),
        r("/fhir/Organization/{id:fhirid}/$weekly-report", consult_weekly_report.handle, "GET", "consult-weekly-report"),
        r("/fhir/Task/{id:fhirid}/$route", consult_route.handle, "POST", "consult-route"),
        r("/fhir/Task/{id:fhirid}/$claim", consult_claim.handle, "POST", "consult-claim"),
        r("/fhir/Task/{id:fhirid}/$complete", consult_complete.handle, "POST", "consult-complete"),
        r("/fhir/Composition/{id:fhirid}/$document", consult_document.handle, "GET", "consult-document"),
        r("/fhir/Composition/{id:fhirid}/$sign", consult_sign.get, "GET", "consult-sign-bytes"),
        r("/fhir/Composition/{id:fhirid}/$sign", consult_sign.post, "POST", "consult-sign"),
        r("/fhir/Composition/{id:fhirid}/$verify-signatures", consult_verify.handle, "GET", "consult-verify-signatures"),
        # Subscriptions (fhir_server/subscriptions, docs/notifications.md).
        r("/fhir/Subscription/$status", sub_status.handle, "GET", "subscription-status-all"),
        r("/fhir/Subscription/{id:fhirid}/$status", sub_status.handle, "GET", "subscription-status"),
        r("/fhir/Subscription/{id:fhirid}/$events", sub_events.handle, "GET", "subscription-events"),
        r("/fhir/Subscription/{id:fhirid}/$events", sub_events.handle, "POST", "subscription-events-post"),
        r("/fhir/Subscription/{id:fhirid}/$get-ws-binding-token", sub_ws.binding_token, "GET", "subscription-ws-token"),
        r("/fhir/Subscription/{id:fhirid}/$get-ws-binding-token", sub_ws.binding_token, "POST",
          "subscription-ws-token-post"),
        WebSocketRoute("/fhir/ws", sub_ws.endpoint, name="subscription-ws"),
        # Our implementation guide's artifacts, read-only (profiles/serving.py); other ids go on to the store.
        r("/fhir/{type:artifacttype}/{id:fhirid}", ig.handle_read, "GET", "artifact-read"),
        r("/fhir/{type:artifacttype}/{id:fhirid}", ig.handle_update, "PUT", "artifact-update"),
        r("/fhir/{type:artifacttype}/{id:fhirid}", ig.handle_patch, "PATCH", "artifact-patch"),
        r("/fhir/{type:artifacttype}/{id:fhirid}", ig.handle_delete, "DELETE", "artifact-delete"),
        r("/fhir/{type:artifacttype}/{id:fhirid}/_history/{vid}", ig.handle_vread, "GET", "artifact-vread"),
        r("/fhir/{type:artifacttype}", ig.handle_search, "GET", "artifact-search"),
        r("/fhir/{type:fhirtype}/{id:fhirid}", read.handle, "GET", "read"),
        r("/fhir/{type:fhirtype}/{id:fhirid}", update.handle, "PUT", "update"),
        r("/fhir/{type:fhirtype}/{id:fhirid}", patch.handle, "PATCH", "patch"),
        r("/fhir/{type:fhirtype}/{id:fhirid}", delete.handle, "DELETE", "delete"),
        r("/fhir/{type:fhirtype}", search.handle, "GET", "search-type"),
        r("/fhir/{type:fhirtype}", create.handle, "POST", "create"),
        r("/fhir/{type:fhirtype}", update.handle_conditional, "PUT", "conditional-update"),
        r("/fhir/{type:fhirtype}", patch.handle_conditional, "PATCH", "conditional-patch"),
        r("/fhir/{type:fhirtype}", delete.handle_conditional, "DELETE", "conditional-delete"),
        r("/fhir/metadata", capability.handle, "GET", "capabilities"),
        r("/fhir", transaction.handle, "POST", "transaction"),
        r("/fhir/", transaction.handle, "POST", "transaction/"),
        r("/fhir/_history", history.handle, "GET", "history-system"),
        r("/fhir/{type:fhirtype}/_search", search.handle, "POST", "search-type-post"),
        r("/fhir/{type:fhirtype}/_history", history.handle, "GET", "history-type"),
        r("/fhir/{type:fhirtype}/{id:fhirid}/_history/{vid}", vread.handle, "GET", "vread"),
        r("/fhir/{type:fhirtype}/{id:fhirid}/_history", history.handle, "GET", "history-instance"),
        Route("/metrics", metrics.endpoint, methods=["GET"], name="metrics"),
        # The local authorization server (SMART App Launch 2.x) and its admin API.
        r("/fhir/.well-known/smart-configuration", smart_configuration.smart_configuration, "GET", "smart-configuration"),
        r("/fhir/.well-known/openid-configuration", smart_configuration.openid_configuration, "GET", "openid-configuration"),
        r("/auth/jwks", smart_configuration.jwks, "GET", "jwks"),
        r("/auth/authorize", authorize.handle, "GET", "authorize"),
        r("/auth/authorize", authorize.handle, "POST", "authorize-post"),
        r("/auth/token", token.handle, "POST", "token"),
        r("/auth/introspect", Introspect(clients).handle, "POST", "introspect"),
        r("/auth/revoke", Revoke(clients).handle, "POST", "revoke"),
        r("/admin/clients", admin_api.list_clients, "GET", "admin-clients"),
        r("/admin/clients", admin_api.create_client, "POST", "admin-client-create"),
        r("/admin/clients/{client_id}", admin_api.read_client, "GET", "admin-client"),
        r("/admin/clients/{client_id}", admin_api.delete_client, "DELETE", "admin-client-delete"),
        r("/admin/users", admin_api.list_users, "GET", "admin-users"),
        r("/admin/users", admin_api.create_user, "POST", "admin-user-create"),
        r("/admin/users/{username}", admin_api.delete_user, "DELETE", "admin-user-delete"),
        r("/admin/launch", admin_api.create_launch, "POST", "admin-launch"),
    ]


class _TypeConvertor(Convertor):
    """A resource type segment: starts with an upper-case letter (``metadata`` is no type)."""

    regex = "[A-Z][A-Za-z]{0,63}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class _IdConvertor(Convertor):
    """A FHIR id segment: [A-Za-z0-9-.]{1,64}."""

    regex = "[A-Za-z0-9\\-.]{1,64}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("fhirtype", _TypeConvertor())
register_url_convertor("fhirid", _IdConvertor())
