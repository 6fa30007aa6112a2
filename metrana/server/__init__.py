"""The Metrana ingestion server (``metrana serve``): the wire protocol on SQLite (one machine) or
PostgreSQL (a team: any number of servers on one database).

Needs the ``server`` extra (``pip install 'metrana[server]'``); PostgreSQL also the
``postgres`` extra.
"""

from .runner import DEFAULT_DB_PATH, ServerInfo, background_server, serve
from .store import Store

__all__ = ["DEFAULT_DB_PATH", "ServerInfo", "Store", "background_server", "serve"]
