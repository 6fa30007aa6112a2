"""Reading TensorBoard event files fast: the record framing, and scalar events by the column.

An event file is a sequence of TFRecords — ``u64 length, u32 masked CRC-32C of the length,
the bytes of one serialized ``Event``, u32 masked CRC-32C of those bytes`` — each holding one
protobuf ``Event``. TensorBoard's own reader (``event_file_loader``) computes the CRCs in
Python and decodes every event through its compatibility layers: about 33 µs an event, 30,000
points a second. Here the framing is a loop of ``struct.unpack_from`` with the CRCs computed
in C (``google-crc32c``), and the commonest event by far — one ``simple_value`` scalar, as
``SummaryWriter.add_scalar`` writes it — is decoded by the column, with numpy:

    09 <wall_time: 8 bytes> 10 <step: varint> 2a <n> 0a <n> 0a <tag length> <tag> 15 <value: 4>

Records of one length whose step has the same number of varint bytes and whose bytes after the
step are identical are the same tag in the same layout; one of them is parsed with protobuf to
prove the layout (it must serialize back to exactly its bytes, with nothing but wall time, step
and one tagged ``simple_value``), and then the wall times, steps and values of all of them are
read as columns. Every other record (TF2 tensor scalars, histograms, images, hparams, the file
header, a step of 0, which protobuf leaves out) is parsed with protobuf by :mod:`.tensorboard`.
"""

from __future__ import annotations

import struct
from typing import Any

import attrs
import google_crc32c
import numpy as np
import numpy.typing as npt

__all__ = ["Framing", "Scalars", "decode_scalars", "frame", "masked_crc"]

_HEADER = struct.Struct("<Q")
_MASK_DELTA = 0xA282EAD8
_MAX_STEP_BYTES = 10  # a varint of a 64-bit integer (a negative step takes all 10)


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data``."""
    crc = int(google_crc32c.value(data))
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


@attrs.frozen
class Framing:
    """Where each record's data starts and how long it is; ``problem`` says why reading
    stopped before the end of the file (a record cut short by a writer still running, or a
    CRC that does not match: damaged data), as TensorBoard also stops there."""

    starts: npt.NDArray[np.int64]
    lengths: npt.NDArray[np.int64]
    problem: str | None


def frame(buffer: Any) -> Framing:
    """The records of an event file held in ``buffer`` (bytes or an mmap).

    The lengths are read in one Python loop; the data's CRCs are computed in C and compared
    by the column. (A damaged length shows as a record whose CRC fails, or one cut short, so
    the length's own CRC is not checked again.)
    """
    starts: list[int] = []  # where each record's header starts
    append = starts.append
    unpack = _HEADER.unpack_from
    size = len(buffer)
    pos = 0
    while pos + 12 <= size:
        after = pos + 16 + unpack(buffer, pos)[0]
        if after > size:
            break
        append(pos)
        pos = after
    problem = None
    if pos < size:
        problem = f"a record cut short at byte {pos:,} (the file is still being written?)"
    heads = np.array(starts, dtype=np.int64)
    count = np.diff(heads, append=pos) - 16
    begin = heads + 12
    starts = begin.tolist()
    if len(begin):
        data = np.frombuffer(buffer, dtype=np.uint8)
        ends = begin + count
        stored = data[ends[:, None] + np.arange(4)].copy().view("<u4").reshape(-1)
        value = google_crc32c.value
        crc = np.fromiter((value(buffer[a:b]) for a, b in zip(starts, ends.tolist(), strict=True)),
                          np.uint32, len(starts))
        masked = ((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(_MASK_DELTA)
        damaged = np.flatnonzero(masked != stored)
        if len(damaged):
            first = int(damaged[0])
            problem = f"a damaged record at byte {starts[first] - 12:,}"
            begin, count = begin[:first], count[:first]
    return Framing(begin, count, problem)


@attrs.frozen
class Scalars:
    """The records decoded as scalars: ``index`` into the framing's records (for the order of
    events), their tag (``tags[tag_index]``), step, wall time (float seconds) and value."""

    index: npt.NDArray[np.int64]
    tag_index: npt.NDArray[np.int64]
    tags: list[str]
    steps: npt.NDArray[np.int64]
    wall_times: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]


def _layout_tag(record: bytes) -> str | None:
    """The tag, if ``record`` is exactly one ``simple_value`` scalar in the canonical layout."""
    from tensorboard.compat.proto import event_pb2

    try:
        event = event_pb2.Event.FromString(record)
    except Exception:  # noqa: BLE001 - any undecodable record just takes the slow path
        return None
    if [f.name for f, _ in event.ListFields()] != ["wall_time", "step", "summary"]:
        return None
    if len(event.summary.value) != 1:
        return None
    value = event.summary.value[0]
    if [f.name for f, _ in value.ListFields()] != ["tag", "simple_value"]:
        return None
    if event.SerializeToString(deterministic=True) != record:
        return None
    return str(value.tag)


def decode_scalars(buffer: Any, framing: Framing) -> Scalars:
    """Decode every record in the canonical scalar layout (see the module docstring); the
    others are left for protobuf."""
    data = np.frombuffer(buffer, dtype=np.uint8)
    starts, lengths = framing.starts, framing.lengths
    found: list[tuple[Any, ...]] = []
    tags: list[str] = []
    tag_ids: dict[str, int] = {}
    # Shortest: tag of 1 byte, a 1-byte step; longest worth grouping: a tag of ~200 bytes.
    candidate = (lengths >= 22) & (lengths <= 256)
    for length in np.unique(lengths[candidate]).tolist():
        rows = np.flatnonzero(candidate & (lengths == length))
        matrix = data[starts[rows, None] + np.arange(length)]
        ok = (matrix[:, 0] == 0x09) & (matrix[:, 9] == 0x10)
        rows, matrix = rows[ok], matrix[ok]
        if not len(rows):
            continue
        width = min(_MAX_STEP_BYTES, length - 21)  # 21: the layout's bytes besides step, tag
        last_byte = matrix[:, 10:10 + width] < 0x80
        has_end = last_byte.any(axis=1)
        step_bytes = np.argmax(last_byte, axis=1) + 1
        for k in np.unique(step_bytes[has_end]).tolist():
            mine = has_end & (step_bytes == k)
            sub_rows, sub = rows[mine], matrix[mine]
            suffix = sub[:, 10 + k:length - 4]
            left = np.ones(len(sub_rows), dtype=bool)
            while left.any():  # one pass per distinct suffix: a handful of tags at most
                same = left & (suffix == suffix[int(np.argmax(left))]).all(axis=1)
                left &= ~same
                members = np.flatnonzero(same)
                first = int(starts[sub_rows[members[0]]])
                tag = _layout_tag(bytes(buffer[first:first + length]))
                if tag is None:
                    continue
                block = sub[members]
                steps = np.zeros(len(members), dtype=np.uint64)
                for j in range(k):
                    steps |= (block[:, 10 + j] & 0x7F).astype(np.uint64) << np.uint64(7 * j)
                tag_id = tag_ids.setdefault(tag, len(tags))
                if tag_id == len(tags):
                    tags.append(tag)
                found.append((sub_rows[members], np.full(len(members), tag_id, dtype=np.int64),
                              steps.view(np.int64),
                              np.ascontiguousarray(block[:, 1:9]).view("<f8").reshape(-1),
                              np.ascontiguousarray(block[:, length - 4:length]).view("<f4")
                              .reshape(-1).astype(np.float64)))
    if not found:
        empty_i = np.zeros(0, dtype=np.int64)
        empty_f = np.zeros(0, dtype=np.float64)
        return Scalars(empty_i, empty_i, tags, empty_i, empty_f, empty_f)
    index, tag_index, steps_, walls, values = (np.concatenate([f[i] for f in found])
                                               for i in range(5))
    return Scalars(index.astype(np.int64), tag_index, tags, steps_, walls, values)
