"""``libervia new-plugin NAME``: a plugin package that installs with pip and passes its own tests as generated.

The package has a ``pyproject.toml`` declaring the ``libervia`` entry point, the plugin module (a settings
schema, a route), the JSON Schema of its settings, tests built on ``libervia.testing`` and a README.
"""

from __future__ import annotations

import argparse
import keyword
import re
import sys
from collections.abc import Callable
from pathlib import Path
from string import Template

from libervia import __version__

_NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")

PYPROJECT = Template('''\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "A Libervia Gateway plugin: $name"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["libervia-gateway>=$gateway_version"]

[project.optional-dependencies]
test = ["pytest>=8", "pytest-asyncio>=0.23"]

# The gateway finds the plugin through this entry point: `pip install` is all a deployment does.
[project.entry-points.libervia]
$plugin = "$module"

[tool.setuptools.packages.find]
where = ["src"]

[tool.setuptools.package-data]
$module = ["*.schema.json"]

[tool.pytest.ini_options]
testpaths = ["tests"]
# libervia.testing's fixtures work in pytest-asyncio's strict mode; the tests mark themselves.
asyncio_mode = "strict"
asyncio_default_fixture_loop_scope = "function"
''')

MODULE = Template('''\
"""$name: a Libervia Gateway plugin.

``GET /api/v1/$plugin/hello`` greets the calling tenant with the configured greeting. Settings::

    [default.plugin.$plugin]
    greeting = "Hello"
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from libervia import context, hookimpl
from libervia.gateway import Gateway
from libervia.responses import json_response
from libervia.routing import Access, Route, schema_resource

PLUGIN_NAME = "$plugin"


@hookimpl
def libervia_config_schema() -> dict[str, Any]:
    return schema_resource(__name__, "settings.schema.json")


async def hello(request: web.Request) -> web.Response:
    config = context.gateway(request).plugin_config(PLUGIN_NAME)
    return json_response({"greeting": f"{config['greeting']}, {context.tenant_id(request)}"})


@hookimpl
def libervia_routes(gateway: Gateway) -> list[Route]:
    return [Route("GET", "/api/v1/$plugin/hello", hello, Access.TENANT_API, name="$plugin.hello")]
''')

SCHEMA = Template('''\
{
  "$$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "plugin.$plugin",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "greeting": {"type": "string", "minLength": 1, "maxLength": 100, "default": "Hello"}
  }
}
''')

TESTS = Template('''\
"""Tests of $name, on the in-process gateway of libervia.testing (a real aiohttp server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import $module
from libervia.errors import StartupError
from libervia.testing import GatewayHarness, TenantAccess

pytestmark = pytest.mark.asyncio


@pytest.fixture
def libervia_settings() -> dict[str, Any]:
    return {"plugin": {"$plugin": {"greeting": "Bom dia"}}}


async def test_installed_through_its_entry_point(libervia_gateway: GatewayHarness) -> None:
    assert libervia_gateway.plugins.origins["$plugin"].startswith("entrypoint:")


async def test_greets_the_calling_tenant(libervia_tenant: TenantAccess) -> None:
    response = await libervia_tenant.public.get("/api/v1/$plugin/hello")
    assert response.status == 200
    assert await response.json() == {"greeting": f"Bom dia, {libervia_tenant.tenant_id}"}


async def test_needs_a_tenant_key(libervia_gateway: GatewayHarness) -> None:
    response = await libervia_gateway.anonymous.get("/api/v1/$plugin/hello")
    assert response.status == 401


async def test_default_greeting(make_libervia_gateway: Any) -> None:
    gateway = await make_libervia_gateway({})
    tenant = await gateway.create_tenant()
    response = await tenant.public.get("/api/v1/$plugin/hello")
    assert (await response.json())["greeting"].startswith("Hello, ")


async def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StartupError) as refused:
        GatewayHarness(tmp_path, {"plugin": {"$plugin": {"greeting": ""}}}, plugins=[$module])
    assert any(line.startswith("plugin.$plugin: $$.greeting") for line in refused.value.problems)
''')

README = Template('''\
# $dist

A [Libervia Gateway](https://example.invalid/libervia) plugin. It serves `GET /api/v1/$plugin/hello`, which greets
the calling tenant.

## Install

    pip install $dist

The gateway finds it through the `libervia` entry point `$plugin`; `libervia plugins` lists it.

## Settings

    [default.plugin.$plugin]
    greeting = "Hello"     # 1 to 100 characters

The schema is `src/$module/settings.schema.json`; the gateway refuses to start when the section does not match it.

## Test

    pip install -e ".[test]"
    python -m pytest

The tests use the fixtures of `libervia.testing` (an in-process gateway, a client per role), loaded by pytest
automatically once the gateway is installed. See the gateway's `docs/plugins/guide.md`.
''')


def names(raw: str) -> dict[str, str]:
    """``my-plugin`` -> distribution ``libervia-my-plugin``, module ``libervia_my_plugin``, plugin ``my_plugin``."""
    if not _NAME.match(raw):
        raise ValueError(f"plugin name {raw!r}: use lowercase letters, digits and single '-' or '_' between them")
    plugin = raw.replace("-", "_")
    if keyword.iskeyword(plugin):
        raise ValueError(f"plugin name {raw!r} is a Python keyword")
    return {"name": raw, "plugin": plugin, "module": f"libervia_{plugin}", "dist": f"libervia-{raw.replace('_', '-')}",
            "gateway_version": __version__}


def generate(raw_name: str, parent: Path) -> Path:
    """Write the package into ``parent/<name>`` (which must not exist yet) and return that directory."""
    values = names(raw_name)
    root = parent / raw_name
    if root.exists():
        raise FileExistsError(f"{root} already exists")
    package = root / "src" / values["module"]
    files = {
        root / "pyproject.toml": PYPROJECT,
        root / "README.md": README,
        package / "__init__.py": MODULE,
        package / "settings.schema.json": SCHEMA,
        root / "tests" / f"test_{values['plugin']}.py": TESTS,
    }
    for path, template in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.substitute(values), "utf-8")
    return root


def cmd_new_plugin(args: argparse.Namespace) -> int:
    try:
        root = generate(args.name, Path(args.directory))
    except (ValueError, FileExistsError) as exc:
        print(f"libervia: new-plugin: {exc}", file=sys.stderr)
        return 2
    print(f"created {root}\nnext: cd {root} && pip install -e '.[test]' && python -m pytest")
    return 0


def add_command(add: Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]) -> None:
    parser = add("new-plugin", cmd_new_plugin, "generate an installable plugin package with tests and a README")
    parser.add_argument("name", help="the plugin's name, e.g. my-auth (package libervia_my_auth)")
    parser.add_argument("--directory", default=".", help="where to create the package folder (default: here)")
