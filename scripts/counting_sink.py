"""A minimal ingestion sink for benchmarks: parses every body and counts its points.

It answers the two write routes of the wire contract (200 to both) and ``GET /count``
(``{"runName": points, ...}``, leaving out ``system/`` series), so a benchmark can check that
what the client claims it delivered was received. Run: ``python scripts/counting_sink.py`` (prints its URL).
"""

from __future__ import annotations

import collections
import gzip
import json
import sys
from typing import Any

import orjson
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

counts: collections.Counter[str] = collections.Counter()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = "startup" if message["type"] == "lifespan.startup" else "shutdown"
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["method"] == "GET":
        reply = json.dumps(counts).encode()
    else:
        if (b"content-encoding", b"gzip") in scope["headers"]:
            body = gzip.decompress(body)
        data = orjson.loads(body)
        for update in data.get("runUpdates", []):
            # The run's own points: the client's system/ samples are left out (see
            # scripts/bench.py served_count).
            points = sum(len(s.get("points", [])) for s in update.get("series", [])
                         if not s.get("metricName", "").startswith("system/"))
            points += sum(len(s.get("points", [])) for s in update.get("rlSeries", []))
            counts[update.get("runName", "")] += points
        reply = b'{"operationId": "sink"}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": reply})


async def main() -> None:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.loglevel = "WARNING"
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, app, config)
        print(f"listening on {binds[0]}", flush=True)


if __name__ == "__main__":
    try:
        trio.run(main)
    except KeyboardInterrupt:
        sys.exit(0)
