"""``metrana keys create|list|revoke``: API keys, in a database opened directly (``--db``: how
the first admin key is made, no server needed) or through a running server (``--url``, with an
admin key).

Both ways run the same checks (:mod:`.server.keys_admin`) and print the same. A new key is
printed once, alone on stdout (``KEY=$(metrana keys create …)``), with what it is on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from ._cli_common import (
    KEY_ADVICE,
    CLIError,
    add_source_options,
    check_database,
    default_db,
    is_url,
)

__all__ = ["KEYS_HELP", "add_keys_parser", "keys_command"]

KEYS_HELP = """\
Make, list and revoke the API keys of a server.

A key is read, write or admin for one or more workspaces ('*': every workspace): read may
read runs (the dashboard, metrana.query, runs/export), write may also create runs and log,
admin may also delete and rename runs and manage the keys of its workspaces. Once a database
has a key, its server asks every request for one.

Reads and writes: the database --db (a SQLite file, created if missing, or a postgresql://
URL; default $METRANA_SERVER_DB or $METRANA_DB, else ~/.metrana/metrana.sqlite3) directly, or
a running server with --url and an admin key (--api-key KEY or METRANA_API_KEY).

  metrana keys create --workspace '*' --role admin --name owner   # the first key, with --db
  metrana keys create --workspace team-a --role write --name ci --expires 90d
  metrana keys list
  metrana keys revoke 1a2b3c4d

A new key is printed once (stdout) and only its hash is stored: keep it then. To rotate a key,
make a new one with the same scope, switch its users to it, then revoke the old one (both work
in between). Revoking ends the key's dashboard sessions too.
"""


def add_keys_parser(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """``metrana keys`` and its three commands, on the main parser's subparsers."""
    raw = argparse.RawDescriptionHelpFormatter
    keys = sub.add_parser("keys", help="make, list and revoke API keys", description=KEYS_HELP,
                          formatter_class=raw)
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION",
                                  parser_class=parser_class)
    create = actions.add_parser("create", help="make a key (printed once)",
                                description=KEYS_HELP, formatter_class=raw)
    create.add_argument("--workspace", action="append", required=True, metavar="WS",
                        help="a workspace the key may use (repeatable; '*': every workspace)")
    create.add_argument("--role", required=True, choices=("read", "write", "admin"),
                        help="read; write (also create runs and log); admin (also delete and "
                             "rename runs, manage keys)")
    create.add_argument("--name", default="", metavar="LABEL",
                        help="what the key is for, shown by 'keys list' (e.g. ci-bot)")
    create.add_argument("--expires", default=None, metavar="DURATION",
                        help="refuse the key after this long: 90d, 12h, 2w, 1y (default: never)")
    actions.add_parser("list", help="the keys: prefix, name, scope, role, dates (no secret)",
                       description=KEYS_HELP, formatter_class=raw)
    revoke = actions.add_parser("revoke", help="refuse a key from now on",
                                description=KEYS_HELP, formatter_class=raw)
    revoke.add_argument("prefix", metavar="PREFIX",
                        help="the key's prefix, as 'keys list' shows it (1a2b3c4d or mk_1a2b3c4d)")
    for command in actions.choices.values():
        add_source_options(
            command,
            db_help="the database (default $METRANA_SERVER_DB, $METRANA_DB or "
                    "~/.metrana/metrana.sqlite3)",
            url_help="a running server instead, with an admin key",
            key_help="an admin key, with --url (default $METRANA_API_KEY)")


class _Keys:
    """The same three calls on a database opened here or on a server's /api/keys routes."""

    def __init__(self, args: argparse.Namespace, *, create_database: bool) -> None:
        self.url: str | None = args.url.rstrip("/") if args.url else None
        if self.url is not None:
            import httpx

            key = args.api_key or os.environ.get("METRANA_API_KEY") or None
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            self._http = httpx.Client(base_url=self.url, headers=headers, timeout=60)
            self.where = f"the server at {self.url}"
            return
        from .server.access import OWNER
        from .server.errors import DatabaseError, SchemaError
        from .server.store import Store
        from .server.store.database import redact

        target = args.db or default_db()
        if is_url(target):
            self.where = f"database {redact(target)}"
        else:
            path = Path(target).expanduser()
            if not create_database and not path.exists():
                raise CLIError(f"no database at {path}: it has no keys (pass --db with the "
                               "server's database, or --url with the server's URL)")
            check_database(path)
            target = str(path)
            self.where = f"database {path}"
        try:
            self._store = Store(target)
        except (DatabaseError, SchemaError) as exc:
            raise CLIError(str(exc)) from None
        self._owner = OWNER

    def close(self) -> None:
        if self.url is not None:
            self._http.close()
        else:
            self._store.close()

    def call(self, action: str, body: dict[str, Any]) -> Any:
        if self.url is not None:
            return self._post(action, body)
        from .server import keys_admin
        from .server.errors import Forbidden, NotFound, QueryError

        now = time.time_ns()
        try:
            if action == "create":
                key, record = keys_admin.create_key(self._store, self._owner, **body)
                return {"key": key, **keys_admin.key_json(record, now)}
            if action == "list":
                return {"keys": [keys_admin.key_json(r, now)
                                 for r in keys_admin.list_keys(self._store, self._owner)]}
            return keys_admin.key_json(
                keys_admin.revoke_key(self._store, self._owner, body["prefix"]), now)
        except (Forbidden, NotFound, QueryError) as exc:
            raise CLIError(str(exc)) from None

    def _post(self, action: str, body: dict[str, Any]) -> Any:
        import httpx

        from ._auth_refusal import auth_refusal, server_message

        try:
            response = self._http.post(f"/api/keys/{action}", json=body)
        except httpx.HTTPError as exc:
            raise CLIError(f"cannot reach {self.url}: {type(exc).__name__}: {exc}; is 'metrana "
                           "serve' running there?") from None
        if response.status_code == 200:
            return response.json()
        refused = auth_refusal(response, KEY_ADVICE)
        if refused is not None:
            raise CLIError(f"{self.url}: {refused}")
        if response.status_code in (404, 405) and "no route" in response.text:
            raise CLIError(f"{self.url} has no key routes: is it a metrana server of this "
                           "version?")
        raise CLIError(f"{self.url}: {server_message(response)} (HTTP {response.status_code})")


def keys_command(args: argparse.Namespace) -> int:
    from .server.api_keys import parse_duration

    body: dict[str, Any] = {}
    if args.action == "create":
        try:
            expires = None if args.expires is None else parse_duration(args.expires)
        except ValueError as exc:
            raise CLIError(f"--expires: {exc}", status=2) from None
        body = {"workspaces": args.workspace, "role": args.role, "name": args.name,
                "expires_s": expires}
    elif args.action == "revoke":
        body = {"prefix": args.prefix}
    started = time.time_ns()
    keys = _Keys(args, create_database=args.action == "create")
    try:
        answer = keys.call(args.action, body)
    finally:
        keys.close()
    if args.action == "create":
        print(answer["key"], flush=True)
        expiry = f", expires {_when(answer['expires_ns'])}" if answer["expires_ns"] else ""
        print(f"metrana keys: made key mk_{answer['prefix']}_… ({_scope(answer)}{expiry}) in "
              f"{keys.where}. This is the only time it is shown: keep it now. Clients pass it as "
              "api_key= or METRANA_API_KEY; the dashboard signs in with it.", file=sys.stderr)
    elif args.action == "revoke":
        named = f"mk_{answer['prefix']}_…" + (f" ({answer['name']})" if answer["name"] else "")
        if answer["revoked_ns"] < started:
            print(f"metrana keys: {named} was already revoked on {_when(answer['revoked_ns'])}")
        else:
            print(f"metrana keys: revoked {named}: every request with it is refused from now "
                  "on (HTTP 401), and its dashboard sessions are ended")
    else:
        _print_table(answer["keys"], keys.where)
    return 0


def _scope(key: dict[str, Any]) -> str:
    where = "every workspace" if key["workspaces"] == ["*"] else ", ".join(key["workspaces"])
    return f"{key['role']} on {where}"


def _when(ns: int | None) -> str:
    if not ns:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ns / 1e9))


def _print_table(keys: list[dict[str, Any]], where: str) -> None:
    if not keys:
        print(f"no keys in {where}: its server is open to whoever reaches it (on loopback "
              "only, unless --allow-anonymous). Make the first with: metrana keys create "
              "--workspace '*' --role admin")
        return
    rows = [("PREFIX", "NAME", "ROLE", "WORKSPACES", "CREATED", "LAST USED", "EXPIRES",
             "STATUS")] + [
        (f"mk_{k['prefix']}", k["name"] or "-", k["role"], ",".join(k["workspaces"]),
         _when(k["created_ns"]), _when(k["last_used_ns"]), _when(k["expires_ns"]) if
         k["expires_ns"] else "never", k["status"]) for k in keys]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
