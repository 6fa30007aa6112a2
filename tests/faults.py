"""A fault-injecting HTTP proxy in front of the real server, for failure tests.

Requests pass through to the real ``metrana serve`` unless the test says otherwise: answer
the next N with a status, refuse some, or hold them at a gate until released. It runs on its
own thread so both synchronous and trio tests can drive it with threading primitives.
"""

from __future__ import annotations

import gzip
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import trio
from hypercorn.config import Config
from hypercorn.trio import serve


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.url = ""
        # canned replies, in order: [status, headers, how many more times]
        self.answers: deque[list[Any]] = deque()
        self.reject_status: int | None = None  # answer every runs:update with this status
        # (status, predicate): refuse a runs:update whose body the predicate picks (a "bad
        # point" the server would refuse), pass the others through.
        self.reject_if: tuple[int, Callable[[bytes], bool]] | None = None
        self.delay = 0.0  # seconds each answer waits (a slow service)
        self.gate = threading.Event()  # cleared: requests wait here
        self.gate.set()
        self.arrived = threading.Event()  # set when a request reaches the gate
        self.log: list[tuple[str, int]] = []  # (path, status) of every answered request
        self._lock = threading.Lock()

    def fail_next(self, count: int, status: int = 503, headers: dict[str, str] | None = None) -> None:
        with self._lock:
            self.answers.append([status, headers or {}, count])

    def recover(self) -> None:
        """Forget the canned answers still due: the service is back."""
        with self._lock:
            self.answers.clear()

    def hold(self) -> None:
        self.arrived.clear()
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    def count(self, path: str, status: int | None = None) -> int:
        with self._lock:
            return sum(1 for p, s in self.log if p == path and (status is None or s == status))

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        self.arrived.set()
        if not self.gate.is_set():
            await trio.to_thread.run_sync(self.gate.wait, abandon_on_cancel=True)
        with self._lock:
            canned = None
            if self.answers:
                status, headers, left = self.answers[0]
                canned = (status, headers)
                if left <= 1:
                    self.answers.popleft()
                else:
                    self.answers[0][2] = left - 1
        if canned is None and self.reject_status is not None and path.endswith(":update"):
            canned = (self.reject_status, {})
        if canned is None and self.reject_if is not None and path.endswith(":update"):
            status, predicate = self.reject_if
            if predicate(_plain(body, scope)):
                canned = (status, {})
        if self.delay:
            await trio.sleep(self.delay)
        if canned is not None:
            status, headers = canned
            content = b'{"message": "injected fault"}'
            out_headers = [(k.encode(), v.encode()) for k, v in headers.items()]
        else:
            headers_in = {k.decode(): v.decode() for k, v in scope["headers"]
                          if k.lower() not in (b"host", b"content-length")}
            async with httpx.AsyncClient() as client:
                response = await client.post(self.upstream + path, content=body, headers=headers_in)
            status, content, out_headers = response.status_code, response.content, []
        with self._lock:
            self.log.append((path, status))
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), *out_headers]})
        await send({"type": "http.response.body", "body": content})


def _plain(body: bytes, scope: dict[str, Any]) -> bytes:
    encoding = dict(scope["headers"]).get(b"content-encoding", b"")
    return gzip.decompress(body) if encoding == b"gzip" else body


@contextmanager
def running_proxy(upstream: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream)
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> None:
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.loglevel = "WARNING"
        config.graceful_timeout = 0.5
        with trio.CancelScope() as scope:
            holder["scope"] = scope
            holder["token"] = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                binds = await nursery.start(serve, proxy.app, config)
                proxy.url = binds[0]
                ready.set()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield proxy
    finally:
        proxy.release()
        trio.from_thread.run_sync(holder["scope"].cancel, trio_token=holder["token"])
        thread.join(10)
