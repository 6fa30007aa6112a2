"""Write the schema of ``metrana-protobuf`` 0.6.1 (the HTTP/JSON protocol) into our package.

``metrana serve`` speaks two versions of the protocol side by side: HTTP/JSON as the seed client
and ours send it (0.6.x: ``UpdateRunsRequest.session_id``) and gRPC as the official client sends
it (0.7: ``logger_session_id``, streaming). Both versions use the same protobuf names, so they
cannot be installed (or registered in one descriptor pool) at once: we depend on 0.7 for gRPC and
keep 0.6.1's descriptors as a ``FileDescriptorSet`` file, loaded into a pool of its own by
:mod:`metrana.server.protobuf_v06`.

Run it once in a throwaway virtualenv holding the version to vendor::

    python -m venv /tmp/pb06 && /tmp/pb06/bin/pip install metrana-protobuf==0.6.1
    /tmp/pb06/bin/python scripts/vendor_protobuf_v06.py
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

from google.protobuf import descriptor as _d, descriptor_pb2

OUT = Path(__file__).resolve().parent.parent / "metrana" / "server" / "protobuf"
VERSION = "0.6.1"


def _in_dependency_order(root: _d.FileDescriptor) -> list[_d.FileDescriptor]:
    ordered: list[_d.FileDescriptor] = []

    def visit(file: _d.FileDescriptor) -> None:
        for dependency in file.dependencies:
            visit(dependency)
        if all(f.name != file.name for f in ordered):
            ordered.append(file)

    visit(root)
    return ordered


def main() -> None:
    from metrana_protobuf.ingestion.v1.svc import api_pb2

    installed = version("metrana-protobuf")
    if installed != VERSION:
        raise SystemExit(f"metrana-protobuf {installed} is installed; this vendors {VERSION}")
    files = descriptor_pb2.FileDescriptorSet()
    for file in _in_dependency_order(api_pb2.DESCRIPTOR):
        if not file.name.startswith("google/"):  # well-known types come from protobuf itself
            file.CopyToProto(files.file.add())
    target = OUT / f"metrana-protobuf-{VERSION}.binpb"
    target.write_bytes(files.SerializeToString(deterministic=True))
    print(f"wrote {target} ({target.stat().st_size:,} bytes, {len(files.file)} files)")


if __name__ == "__main__":
    main()
