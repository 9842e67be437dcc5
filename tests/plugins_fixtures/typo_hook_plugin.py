"""A plugin with a misspelt hook: the gateway must refuse to start rather than silently ignore it."""

from libervia import hookimpl


@hookimpl
def libervia_rotues(gateway):  # the typo is the point
    return []
