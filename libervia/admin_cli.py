"""``libervia tenants|keys|audit …``: the admin API from a terminal, built on :mod:`libervia.client`.

The gateway's address and the token come from ``--url`` / ``--token`` or from ``LIBERVIA_URL`` and ``ADMIN_TOKEN``
(``LIBERVIA_ADMIN_TOKEN`` too); a tenant_admin key works wherever the API lets it. Answers are printed as JSON on
stdout; an API error prints ``libervia: <status> <code>: <message> (request <id>)`` on stderr and exits 1.
``audit verify`` exits 1 when the chain is not valid.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from libervia.client import Client, LiberviaError

EXIT_OK = 0
EXIT_FAILED = 1

Action = Callable[[Client, argparse.Namespace], Any]


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _default_url() -> str:
    return os.environ.get("LIBERVIA_URL") or f"http://localhost:{os.environ.get('PORT', '3000')}"


def _default_token() -> str | None:
    return os.environ.get("ADMIN_TOKEN") or os.environ.get("LIBERVIA_ADMIN_TOKEN")


def _run(action: Action) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        if not args.token:
            print("libervia: no token: pass --token or set ADMIN_TOKEN", file=sys.stderr)
            return EXIT_FAILED
        try:
            with Client(args.url, args.token, timeout=args.timeout) as client:
                result = action(client, args)
        except LiberviaError as exc:
            print(f"libervia: {exc}", file=sys.stderr)
            return EXIT_FAILED
        if isinstance(result, int):
            return result
        _print(result)
        return EXIT_OK

    return command


# --- tenants ---------------------------------------------------------------------------------------------------

def _tenants_list(client: Client, args: argparse.Namespace) -> Any:
    return client.list_tenants(status=args.status, include_deleted=args.include_deleted or None,
                               limit=args.limit, offset=args.offset)


def _tenants_create(client: Client, args: argparse.Namespace) -> Any:
    quotas = {"rateLimitRpm": args.rate_limit_rpm} if args.rate_limit_rpm is not None else None
    return client.create_tenant(args.tenant, args.name or args.tenant, quotas=quotas)


def _tenants_suspend(client: Client, args: argparse.Namespace) -> Any:
    return client.suspend_tenant(args.tenant, args.reason)


def _tenants_resume(client: Client, args: argparse.Namespace) -> Any:
    return client.resume_tenant(args.tenant, args.reason)


def _tenants_delete(client: Client, args: argparse.Namespace) -> Any:
    return client.delete_tenant(args.tenant)


# --- keys ------------------------------------------------------------------------------------------------------

def _keys_create(client: Client, args: argparse.Namespace) -> Any:
    return client.create_key(args.tenant, args.role, args.description)


def _keys_list(client: Client, args: argparse.Namespace) -> Any:
    return client.list_keys(args.tenant)


def _keys_revoke(client: Client, args: argparse.Namespace) -> Any:
    return client.revoke_key(args.tenant, args.key_id)


def _keys_rotate(client: Client, args: argparse.Namespace) -> Any:
    return client.rotate_keys(args.tenant, args.role, revoke_old=not args.keep_old)


# --- audit -----------------------------------------------------------------------------------------------------

def _audit_verify(client: Client, args: argparse.Namespace) -> Any:
    result = client.verify(args.tenant, fast=args.fast)
    _print(result)
    return EXIT_OK if result.get("valid") else EXIT_FAILED


def _audit_export(client: Client, args: argparse.Namespace) -> Any:
    """NDJSON (one entry per line, then the manifest) to ``--output`` or stdout, with a progress bar when a
    person watches a terminal and the entries go to a file."""
    bounds = {"from_seq": args.from_seq, "to_seq": args.to_seq, "from_ts": args.from_ts, "to_ts": args.to_ts}
    show_progress = args.output is not None and sys.stderr.isatty() and not args.no_progress
    out = Path(args.output).open("w", encoding="utf-8") if args.output else sys.stdout
    manifest: dict[str, Any] = {}
    try:
        with tqdm(desc=f"export {args.tenant}", unit=" entries", disable=not show_progress) as bar:
            for item in client.iter_export(args.tenant, **bounds):
                out.write(json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n")
                if "manifest" in item and len(item) == 1:
                    manifest = item["manifest"]
                else:
                    bar.update(1)
    finally:
        if out is not sys.stdout:
            out.close()
    if args.output:
        print(json.dumps({"output": args.output, "manifest": manifest}, indent=2), file=sys.stderr)
    return EXIT_OK


def add_admin_commands(sub: Any) -> None:
    """Register ``tenants``, ``keys`` and ``audit`` on the ``libervia`` parser's subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=_default_url(), help="gateway URL (default: LIBERVIA_URL or localhost)")
    common.add_argument("--token", default=_default_token(), help="bearer token (default: ADMIN_TOKEN)")
    common.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")

    def group(name: str, help_text: str) -> Any:
        parser = sub.add_parser(name, help=help_text, description=help_text)
        return parser.add_subparsers(dest=f"{name}_action", required=True)

    def action(actions: Any, name: str, func: Action, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(name, help=help_text, description=help_text,
                                                             parents=[common])
        parser.set_defaults(func=_run(func))
        return parser

    tenants = group("tenants", "manage tenants through the admin API")
    p = action(tenants, "list", _tenants_list, "list tenants")
    p.add_argument("--status", choices=["active", "suspended", "deleted"])
    p.add_argument("--include-deleted", action="store_true")
    p.add_argument("--limit", type=int)
    p.add_argument("--offset", type=int)
    p = action(tenants, "create", _tenants_create, "create a tenant")
    p.add_argument("tenant")
    p.add_argument("--name", help="display name (default: the id)")
    p.add_argument("--rate-limit-rpm", type=int, help="requests per minute (0 = unlimited)")
    for name, func, text in (("suspend", _tenants_suspend, "suspend a tenant"),
                             ("resume", _tenants_resume, "resume a suspended tenant")):
        p = action(tenants, name, func, text)
        p.add_argument("tenant")
        p.add_argument("--reason")
    p = action(tenants, "delete", _tenants_delete, "delete a tenant (its data is kept)")
    p.add_argument("tenant")

    keys = group("keys", "manage a tenant's API keys")
    p = action(keys, "create", _keys_create, "create a key (the token is printed once)")
    p.add_argument("tenant")
    p.add_argument("--role", choices=["public", "tenant_admin"], default="public")
    p.add_argument("--description")
    p = action(keys, "list", _keys_list, "list a tenant's keys")
    p.add_argument("tenant")
    p = action(keys, "revoke", _keys_revoke, "revoke a key")
    p.add_argument("tenant")
    p.add_argument("key_id")
    p = action(keys, "rotate", _keys_rotate, "issue a new key of a role, revoking the old ones")
    p.add_argument("tenant")
    p.add_argument("--role", choices=["public", "tenant_admin"], default="public")
    p.add_argument("--keep-old", action="store_true", help="do not revoke the role's existing keys")

    audit = group("audit", "verify or export a tenant's event log")
    p = action(audit, "verify", _audit_verify, "verify the hash chain (exit 0 valid, 1 invalid)")
    p.add_argument("tenant")
    p.add_argument("--fast", action="store_true", help="start from the newest good checkpoint")
    p = action(audit, "export", _audit_export, "export entries as NDJSON, then the manifest")
    p.add_argument("tenant")
    p.add_argument("--output", help="file to write (default: stdout)")
    p.add_argument("--from-seq", type=int)
    p.add_argument("--to-seq", type=int)
    p.add_argument("--from-ts")
    p.add_argument("--to-ts")
    p.add_argument("--no-progress", action="store_true")
