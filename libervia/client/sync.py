"""The synchronous client: the same methods as :class:`~libervia.client.aio.AsyncClient`, blocking.

Each call runs the asynchronous client's method on a private event loop owned by this object, so both clients
share one implementation of every route, of the retries on 429 and of the error mapping.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

from libervia.client.aio import AsyncClient


class Client:
    """``with Client(url, token) as client: client.list_tenants()``. Not for use inside a running event loop
    (use :class:`AsyncClient` there)."""

    def __init__(self, base_url: str, token: str | None = None, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._async = AsyncClient(base_url, token, **options)

    @property
    def base_url(self) -> str:
        return self._async.base_url

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self._async.close())
            self._loop.close()

    def iter_export(self, tenant_id: str, **bounds: Any) -> Iterator[dict[str, Any]]:
        """The streamed export, entry by entry (see :meth:`AsyncClient.iter_export`)."""
        stream = self._async.iter_export(tenant_id, **bounds)
        try:
            while True:
                try:
                    yield self._loop.run_until_complete(anext(stream))
                except StopAsyncIteration:
                    return
        finally:
            self._loop.run_until_complete(stream.aclose())

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._async, name)
        if name.startswith("_") or not inspect.iscoroutinefunction(method):
            raise AttributeError(name)

        @functools.wraps(method)
        def blocking(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run_until_complete(method(*args, **kwargs))

        setattr(self, name, blocking)  # resolved once per client
        return blocking
