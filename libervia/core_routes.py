"""Route handlers over a tenant's Core, for any plugin that serves Core commands or views.

A route maps to a command through :func:`command_handler` (``Commands.decide`` plus where each input comes from in
the request) and to a read through :func:`view_handler`; both run on the request's tenant Core through the
runtime, so an instance evicted between lookup and use is transparently replaced.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from libervia import context
from libervia.core import TenantCore
from libervia.core.commands import CommandMethod
from libervia.responses import json_response

Arg = Callable[[web.Request], Any]
Handler = Callable[[web.Request], Awaitable[web.Response]]


def request_body(request: web.Request) -> dict[str, Any]:
    """The whole validated body as the command's input."""
    return context.body(request)


def path_arg(name: str) -> Arg:
    return lambda request: request.match_info[name]


def body_field(name: str) -> Arg:
    """A body field the request schema requires."""
    return lambda request: context.body(request)[name]


def optional_field(name: str) -> Arg:
    return lambda request: context.body(request).get(name)


def command_handler(command: CommandMethod, *args: Arg, status: int = 200,
                    answer: Callable[[Any], Any] | None = None) -> Handler:
    """The one adapter from a route to a Core command: ``args`` take the command's inputs from the request, the
    caller's key is the actor, and the command's response is the JSON answer (passed through ``answer`` first when
    the wire shape adds to it, such as v1's ``success``/``message``)."""

    async def handler(request: web.Request) -> web.Response:
        values = [arg(request) for arg in args]
        actor, request_id = context.principal(request).actor, context.request_id(request)
        result = await context.gateway(request).runtime.call(
            context.tenant_id(request),
            lambda core: core.execute(command, *values, actor=actor, request_id=request_id))
        return json_response(result if answer is None else answer(result), status=status)

    return handler


def view_handler(read: Callable[[TenantCore, web.Request], Awaitable[Any]]) -> Handler:
    """A handler that runs ``read`` on the request's tenant Core and answers its result as JSON."""

    async def handler(request: web.Request) -> web.Response:
        runtime = context.gateway(request).runtime
        return json_response(await runtime.call(context.tenant_id(request), lambda core: read(core, request)))

    return handler
