"""A Python client for the Libervia Gateway: :class:`AsyncClient` (aiohttp) and :class:`Client` (blocking).

Both cover the whole HTTP API (health, tenants, keys, audit, mandates, reviews, the query panel, runtime
administration and the tenant Core routes), return the parsed JSON typed with :mod:`libervia.client.types`, raise
:class:`ApiError` carrying ``status``, ``code``, ``message`` and ``request_id``, retry 429 answers after
their ``Retry-After``, and time out.
"""

from libervia.client.aio import AsyncClient
from libervia.client.errors import ApiError, LiberviaError, RateLimited, RequestTimeout, TransportError
from libervia.client.sync import Client

__all__ = ["ApiError", "AsyncClient", "Client", "LiberviaError", "RateLimited", "RequestTimeout", "TransportError"]
