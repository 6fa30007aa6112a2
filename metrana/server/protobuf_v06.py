"""The HTTP/JSON protocol's schema: ``metrana-protobuf`` 0.6.1, kept in our package.

The HTTP/JSON API (``POST /v1/runs``, ``POST /v1/runs:update``) is what the seed client 0.2.1
and ours speak; its ``UpdateRunsRequest`` carries ``session_id``, which 0.7 replaced with
``logger_session_id``. The gRPC API (:mod:`.grpc_ingest`) follows 0.7, the installed
``metrana-protobuf``. Both versions give their messages the same full names, so 0.6.1's
descriptors (``protobuf/metrana-protobuf-0.6.1.binpb``, written by
``scripts/vendor_protobuf_v06.py``) live in a descriptor pool of their own, where they can never
clash with 0.7's.

:mod:`.validate` compiles its JSON converters from these descriptors; tests build real 0.6.1
messages from them (:func:`message_class`) to check our JSON against ``json_format``.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

from google.protobuf import descriptor as _d, descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.timestamp_pb2 import Timestamp

__all__ = ["VERSION", "descriptor", "message_class"]

VERSION = "0.6.1"
PACKAGE = "metrana_protobuf.ingestion.v1"


@cache
def _pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    timestamp = descriptor_pb2.FileDescriptorProto()
    Timestamp.DESCRIPTOR.file.CopyToProto(timestamp)
    pool.Add(timestamp)
    data = (files(__package__) / "protobuf" / f"metrana-protobuf-{VERSION}.binpb").read_bytes()
    for file in descriptor_pb2.FileDescriptorSet.FromString(data).file:  # in dependency order
        pool.Add(file)
    return pool


def descriptor(name: str) -> _d.Descriptor:
    """A 0.6.1 message's descriptor by full name, e.g.
    ``metrana_protobuf.ingestion.v1.svc.UpdateRunsRequest``."""
    return _pool().FindMessageTypeByName(name)


def message_class(name: str) -> Any:
    """A 0.6.1 message class by full name (for tests and tools: ``json_format`` works on it)."""
    return message_factory.GetMessageClass(descriptor(name))
