"""Libervia Gateway: a small aiohttp host that composes a multi-tenant gateway from pluggy plugins.

Plugin authors import :data:`hookimpl` from here to mark their hook implementations::

    from libervia import hookimpl

    @hookimpl
    def libervia_routes(gateway):
        ...
"""

import pluggy

__version__ = "1.0.0"

PROJECT_NAME = "libervia"

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = ["PROJECT_NAME", "__version__", "hookimpl"]
