"""Per-tenant IP allow-lists for the Libervia Gateway (an example plugin).

A request authenticated as one of a tenant's keys (or any principal of that tenant) is refused with 403
``ADDRESS_NOT_ALLOWED`` unless the client address is inside one of the networks configured for that tenant. The
global admin is never restricted. Tenants not listed use ``default`` (unrestricted when it is null).

It is a pluggy *wrapper* on ``libervia_authenticate``: it lets every authenticator decide who is calling, then
looks at the principal it gets back (the gateway hands wrappers the awaited result). So it applies to tenant
keys, to JWTs from another plugin, to anything that yields a tenant principal. The refusal counts as an
authentication failure (reason ``ADDRESS_NOT_ALLOWED``) in the gateway's metrics.

The client address is the connection's peer address (``request.remote``).

Settings::

    [default.plugin.ip_allowlist.tenants]
    acme = ["10.20.0.0/16", "2001:db8::/32"]
    globex = ["192.0.2.7"]
"""

from __future__ import annotations

import ipaddress
from collections.abc import Generator, Sequence
from typing import Any

from aiohttp import web

from libervia import hookimpl
from libervia.context import Principal
from libervia.errors import AuthError, StartupError
from libervia.gateway import Gateway
from libervia.routing import schema_resource

PLUGIN_NAME = "ip_allowlist"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AllowList:
    def __init__(self, tenants: dict[str, list[Network]], default: list[Network] | None) -> None:
        self.tenants = tenants
        self.default = default

    def networks_for(self, tenant_id: str) -> list[Network] | None:
        return self.tenants.get(tenant_id, self.default)

    def allows(self, tenant_id: str, address: str | None) -> bool:
        networks = self.networks_for(tenant_id)
        if networks is None:
            return True
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in networks)


def parse_networks(where: str, values: Sequence[str], problems: list[str]) -> list[Network]:
    networks: list[Network] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            problems.append(f"plugin.{PLUGIN_NAME}.{where}: {value!r} is not a network (CIDR) or an address")
    return networks


def from_config(config: dict[str, Any]) -> AllowList:
    problems: list[str] = []
    tenants = {tenant: parse_networks(f"tenants.{tenant}", values, problems)
               for tenant, values in config["tenants"].items()}
    default = None if config["default"] is None else parse_networks("default", config["default"], problems)
    if problems:
        raise StartupError(problems)
    return AllowList(tenants, default)


_LISTS: dict[int, AllowList] = {}


@hookimpl
def libervia_config_schema() -> dict[str, Any]:
    return schema_resource(__name__, "settings.schema.json")


@hookimpl
def libervia_startup(gateway: Gateway) -> None:
    _LISTS[id(gateway)] = from_config(gateway.plugin_config(PLUGIN_NAME))


@hookimpl
def libervia_shutdown(gateway: Gateway) -> None:
    _LISTS.pop(id(gateway), None)


@hookimpl(wrapper=True)
def libervia_authenticate(gateway: Gateway, request: web.Request) -> Generator[None, Any, Principal | None]:
    principal: Principal | None = yield
    allow = _LISTS.get(id(gateway))
    if principal is None or principal.tenant_id is None or allow is None:
        return principal
    if not allow.allows(principal.tenant_id, request.remote):
        raise AuthError("ADDRESS_NOT_ALLOWED", "This tenant's credentials cannot be used from this address.",
                        status=403, tenant_claim=principal.tenant_id)
    return principal
