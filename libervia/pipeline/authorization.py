"""The one role table: which roles each access group admits (API.md §2)."""

from __future__ import annotations

from libervia.context import Principal
from libervia.errors import AuthError
from libervia.routing import Access, Role

ROLE_TABLE: dict[Access, frozenset[Role]] = {
    Access.OPEN: frozenset(Role),
    Access.TENANT_API: frozenset({Role.PUBLIC, Role.TENANT_ADMIN}),
    Access.TENANT_READ: frozenset({Role.TENANT_ADMIN, Role.GLOBAL_ADMIN}),
    Access.TENANT_MANAGE: frozenset({Role.TENANT_ADMIN, Role.GLOBAL_ADMIN}),
    Access.GLOBAL_ADMIN: frozenset({Role.GLOBAL_ADMIN}),
}

# Groups where a tenant key acts only while its tenant is active.
NEEDS_ACTIVE_TENANT = frozenset({Access.TENANT_API, Access.TENANT_MANAGE})


def authorise(access: Access, who: Principal, tenant_id: str | None) -> None:
    """Refuse ``who`` on a route of ``access`` acting on ``tenant_id``.

    A tenant key pointed at another tenant's admin route is an invalid token for that route (401), so a key
    cannot be used to learn which other tenants exist; a known caller with too small a role gets 403.
    """
    if (
        access in (Access.TENANT_READ, Access.TENANT_MANAGE)
        and who.role is not Role.GLOBAL_ADMIN
        and who.tenant_id != tenant_id
    ):
        raise AuthError("INVALID_TOKEN", "The token is not valid for this tenant.")
    if who.role not in ROLE_TABLE[access]:
        # An AuthError (not a plain 403) so that it is counted in auth_failures_total{reason} like every failure.
        raise AuthError("INSUFFICIENT_ROLE", f"The {who.role.value} role may not use this route.", status=403)
