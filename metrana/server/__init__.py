"""The local Metrana ingestion server (``metrana serve``): the wire protocol on SQLite.

Needs the ``server`` extra (``pip install 'metrana[server]'``).
"""

from .runner import DEFAULT_DB_PATH, ServerInfo, background_server, serve
from .store import Store

__all__ = ["DEFAULT_DB_PATH", "ServerInfo", "Store", "background_server", "serve"]
