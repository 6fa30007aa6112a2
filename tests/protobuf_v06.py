"""The HTTP/JSON protocol's messages (``metrana-protobuf`` 0.6.1) for tests, under the names the
generated modules give them: ``api_pb2.UpdateRunsRequest``, ``updates_pb2.Point``. Built from the
descriptors our package keeps (:mod:`metrana.server.protobuf_v06`): the installed
``metrana-protobuf`` is 0.7, the gRPC protocol."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from metrana.server.protobuf_v06 import PACKAGE, descriptor, message_class


def _module(package: str) -> Any:
    file = descriptor(f"{package}.{_FIRST[package]}").file
    return SimpleNamespace(**{name: message_class(f"{package}.{name}")
                              for name in file.message_types_by_name})


_FIRST = {f"{PACKAGE}.svc": "UpdateRunsRequest", f"{PACKAGE}.types": "Point"}
api_pb2 = _module(f"{PACKAGE}.svc")
updates_pb2 = _module(f"{PACKAGE}.types")
