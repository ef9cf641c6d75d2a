"""The FHIR-free admin API (JSON) of the local authorization server: clients, users and EHR
launch contexts. Every call needs an admin access token (``Authorization: Bearer``, a
``system/*.*`` grant, e.g. from ``telemed token --scope "system/*.*"``).

- ``GET /admin/clients``, ``POST /admin/clients`` (201; a symmetric client's ``client_secret``
  is in this answer only), ``GET|DELETE /admin/clients/{client_id}``
- ``GET /admin/users``, ``POST /admin/users`` ``{username, password, fhirUser}`` (201),
  ``DELETE /admin/users/{username}``
- ``POST /admin/launch`` ``{patient, encounter, fhirContext, need_patient_banner, fhirUser}``
  -> 201 ``{launch}``

Errors are ``{"error": ..., "error_description": ...}``: 400 ``invalid_request``, 401
``invalid_token``, 403 ``insufficient_scope``, 404 ``not_found``, 409 ``conflict``.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth import accounts, launch
from fhir_server.errors import OperationOutcomeError
from fhir_server.http import json_response, read_json

MAX_BODY = 256 * 1024


class AdminError(Exception):
    def __init__(self, status: int, error: str, description: str, headers: dict | None = None):
        super().__init__(description)
        self.status, self.error, self.description, self.headers = status, error, description, headers or {}


def _json(body: dict | list, status: int = 200) -> Response:
    return json_response(orjson.dumps(body), status, {"Cache-Control": "no-store"}, media_type="application/json")


async def _as_admin(request: Request, svc, work: Callable[[], Awaitable[Response]]) -> Response:
    try:
        try:
            who = await svc.principal(request)
        except OperationOutcomeError as exc:
            raise AdminError(exc.status, "invalid_token", str(exc), exc.headers) from None
        if not who.admin:
            raise AdminError(403, "insufficient_scope", "The admin API needs an admin token (system/*.*)")
        return await work()
    except AdminError as exc:
        return json_response({"error": exc.error, "error_description": exc.description}, exc.status,
                             {"Cache-Control": "no-store", **exc.headers}, media_type="application/json")


async def _body(request: Request) -> dict:
    try:
        body = await read_json(request, MAX_BODY, ("application/json",))
    except OperationOutcomeError as exc:
        raise AdminError(exc.status if exc.status != 422 else 400, "invalid_request", str(exc)) from None
    if not isinstance(body, dict):
        raise AdminError(400, "invalid_request", "The body must be a JSON object")
    return body


# clients

async def list_clients(request: Request, svc) -> Response:
    async def work():
        return _json([accounts.public_view(c) for c in await accounts.list_clients(svc.auth_state)])
    return await _as_admin(request, svc, work)


async def create_client(request: Request, svc) -> Response:
    async def work():
        body = await _body(request)
        try:
            record, secret = await asyncio.to_thread(accounts.new_client, body)
        except ValueError as exc:
            raise AdminError(400, "invalid_request", str(exc)) from None
        if not await accounts.save_client(svc.auth_state, record):
            raise AdminError(409, "conflict", f"client_id {record['client_id']} is taken")
        view = accounts.public_view(record)
        return _json({**view, "client_secret": secret} if secret else view, 201)
    return await _as_admin(request, svc, work)


async def read_client(request: Request, svc) -> Response:
    async def work():
        client = await accounts.get_client(svc.auth_state, request.path_params["client_id"])
        if client is None:
            raise AdminError(404, "not_found", "No such client")
        return _json(accounts.public_view(client))
    return await _as_admin(request, svc, work)


async def delete_client(request: Request, svc) -> Response:
    async def work():
        if not await accounts.remove_client(svc.auth_state, request.path_params["client_id"]):
            raise AdminError(404, "not_found", "No such client")
        return Response(status_code=204)
    return await _as_admin(request, svc, work)


# users

async def list_users(request: Request, svc) -> Response:
    async def work():
        return _json([accounts.user_view(u) for u in await accounts.list_users(svc.auth_state)])
    return await _as_admin(request, svc, work)


async def create_user(request: Request, svc) -> Response:
    async def work():
        body = await _body(request)
        try:
            record = await asyncio.to_thread(accounts.new_user, body.get("username"), body.get("password"),
                                             body.get("fhirUser"))
        except ValueError as exc:
            raise AdminError(400, "invalid_request", str(exc)) from None
        if not await accounts.save_user(svc.auth_state, record):
            raise AdminError(409, "conflict", f"username {record['username']} is taken")
        return _json(accounts.user_view(record), 201)
    return await _as_admin(request, svc, work)


async def delete_user(request: Request, svc) -> Response:
    async def work():
        if not await accounts.remove_user(svc.auth_state, request.path_params["username"]):
            raise AdminError(404, "not_found", "No such user")
        return Response(status_code=204)
    return await _as_admin(request, svc, work)


# EHR launch

async def create_launch(request: Request, svc) -> Response:
    async def work():
        try:
            context = launch.context_of(await _body(request))
        except ValueError as exc:
            raise AdminError(400, "invalid_request", str(exc)) from None
        return _json({"launch": await launch.create(svc.auth_state, context), "expires_in": launch.LAUNCH_SECONDS}, 201)
    return await _as_admin(request, svc, work)
