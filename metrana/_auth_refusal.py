"""What the client says when a server refuses its key (HTTP 401) or what its key may do (403).

The server's message already names the key by its prefix and, for 403, the workspace; the
client adds which key it sent (by prefix: it never repeats a key) and what to do, in the same
words wherever the refusal surfaces: ``metrana.init``'s run creation, a refused batch, ``sync``,
``metrana.query`` and the CLI.
"""

from __future__ import annotations

import json
import re

import httpx

__all__ = ["auth_refusal", "key_label", "server_message"]

_KEY = re.compile(r"mk_([0-9a-f]{8})_")


def key_label(key: str | None) -> str:
    """A key as the client names it: ``API key mk_1a2b3c4d_…``, never its secret."""
    if not key:
        return "no API key"
    match = _KEY.match(key)
    return f"API key mk_{match.group(1)}_…" if match else "the API key given"


def _sent_key(response: httpx.Response) -> str | None:
    scheme, _, key = response.request.headers.get("authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" else None


def server_message(response: httpx.Response) -> str:
    """The server's own message (the ``message`` of its JSON error), else the start of the
    body."""
    try:
        return str(json.loads(response.content)["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:500]


def auth_refusal(response: httpx.Response, how: str = "api_key= or METRANA_API_KEY"
                 ) -> str | None:
    """For a 401 or 403: what was refused and what to do (``how``: how this caller passes a
    key); None for any other status."""
    status = response.status_code
    if status not in (401, 403):
        return None
    key = _sent_key(response)
    said = server_message(response)
    label = key_label(key)
    sent = "it" if label in said else label  # the server's message names a key by its prefix
    if status == 403:
        return f"the server refused {'this' if sent == 'it' else sent} (HTTP 403): {said}"
    if not key:
        return f"the server needs an API key (HTTP 401): {said}; pass one as {how}"
    return f"the server refused {sent} (HTTP 401): {said}; pass a valid key as {how}"
