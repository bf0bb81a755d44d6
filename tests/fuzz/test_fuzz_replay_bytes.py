"""Replay over arbitrary disk bytes, from pure noise to records forged with valid CRCs.

Random bytes almost never get past the CRCs, so four generators go progressively deeper:
noise (with and without superblock magic), a valid superblock over a journal region patched
with noise and record-like headers, records forged with the volume's CRC salt but arbitrary
fields and operations (which reaches the operation decoder), and superblocks with arbitrary
fields and a valid CRC (which reaches the geometry checks). For every image, opening ends in a
state or a :class:`StatefsError`, inside the replay bounds, deterministically; a state holds
only normal keys, each with a value some forged PUT carried for it.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from guest.statefs import MemoryBlockDevice, Store
from guest.statefs.crc import crc32c
from guest.statefs.layout import (
    CRC_COVERS_FROM,
    FORMAT_VERSION,
    RECORD_HEADER,
    RECORD_MAGIC,
    SUPERBLOCK,
    SUPERBLOCK_BYTES,
    SUPERBLOCK_MAGIC,
    Superblock,
    round_up,
)

from support.fuzzing import fuzz_settings, seed_decorator
from support.replaycheck import check_bounds, check_written, count_open, open_image
from support.tally import Outcomes

SS = 512
SECTORS = 1100
KEYS = st.sampled_from(
    ["/state/a", "/state/b/c", "/state//a", "/state/../x", "/etc/passwd", "/state/\x00", "", "x"]
) | st.text(max_size=20).map(lambda tail: "/state/" + tail)


@functools.cache
def formatted() -> tuple[bytes, Superblock]:
    """A freshly formatted device image (fixed volume id and epoch) and its superblock."""
    dev = MemoryBlockDevice(SS, SECTORS)
    store = Store.format(dev, volume_id=0xF0F0_1234, epoch=99)
    sb = store.superblock
    store.close()
    return bytes(dev.data), sb


def place(image: bytearray, offset: int, data: bytes) -> None:
    data = data[: max(0, len(image) - offset)]
    image[offset : offset + len(data)] = data


@dataclass(frozen=True)
class Case:
    """A fuzz image as a recipe (a base and a few patches), so a failing example prints in a
    few lines instead of as megabytes of image."""

    patches: tuple[tuple[int, bytes], ...]
    noise: bytes = b""  # tiled over the device instead of the formatted image, if set
    history: tuple[tuple[str, bytes], ...] = ()

    def image(self) -> bytes:
        if self.noise:
            size = SS * SECTORS
            image = bytearray((self.noise * (size // len(self.noise) + 1))[:size])
        else:
            image = bytearray(formatted()[0])
        for offset, data in self.patches:
            place(image, offset, data)
        return bytes(image)

    def written(self) -> dict[str, frozenset[bytes]]:
        values: dict[str, set[bytes]] = {}
        for key, value in self.history:
            values.setdefault(key, set()).add(value)
        return {key: frozenset(found) for key, found in values.items()}


@st.composite
def noise_images(draw) -> Case:
    """Noise, tiled over the device, optionally behind superblock magic."""
    seed = draw(st.binary(min_size=1, max_size=4096))
    slots = draw(st.sets(st.sampled_from((0, 1))))
    return Case(tuple((slot * SS, SUPERBLOCK_MAGIC) for slot in sorted(slots)), noise=seed)


def record_header(draw, sb: Superblock, seq: int) -> bytes:
    """A record header whose fields are usually plausible and sometimes arbitrary."""
    epoch = draw(st.sampled_from((sb.epoch, sb.epoch, sb.epoch + 1)) | st.integers(0, 2**32 - 1))
    rec_seq = draw(st.sampled_from((seq, seq, seq + 1, seq - 1)) | st.integers(0, 2**64 - 1))
    kind = draw(st.sampled_from((1, 1, 2)) | st.integers(0, 255))
    flags = draw(st.sampled_from((0, 0, 0, 1)))
    reserved = draw(st.sampled_from((0, 0, 0, 7)))
    op_count = draw(st.integers(0, 6) | st.integers(0, 2**32 - 1))
    payload = draw(st.integers(0, 3000) | st.integers(0, 2**32 - 1))
    return RECORD_HEADER.pack(
        RECORD_MAGIC, 0, epoch, rec_seq, kind, flags, reserved, op_count, payload
    )


@st.composite
def patched_journals(draw) -> Case:
    """A valid superblock over a region patched with noise and record-like headers."""
    _, sb = formatted()
    start = sb.region_start(sb.active_region) * SS
    patches = []
    for _ in range(draw(st.integers(1, 12))):
        offset = start + draw(st.integers(0, 40)) * SS + draw(st.sampled_from((0, 0, 0, 1, 8)))
        if draw(st.booleans()):
            patches.append((offset, record_header(draw, sb, draw(st.integers(1, 4)))))
        else:
            patches.append((offset, draw(st.binary(max_size=700))))
    return Case(tuple(patches))


@st.composite
def forged_ops(draw) -> tuple[bytes, int, list[tuple[str, bytes]]]:
    """An operations payload (often well formed, sometimes not) and the PUTs it carries."""
    parts: list[bytes] = []
    puts: list[tuple[str, bytes]] = []
    count = draw(st.integers(0, 5))
    for _ in range(count):
        key = draw(KEYS)
        encoded = key.encode("utf-8", "surrogatepass")
        value = draw(st.binary(max_size=300))
        op = draw(st.sampled_from((1, 1, 2)) | st.integers(0, 255))
        if op == 2 and draw(st.booleans()):
            value = b""
        header = struct.pack(
            "<BBHI",
            op,
            draw(st.sampled_from((0, 0, 0, 4))),
            draw(st.sampled_from((len(encoded),) * 4) | st.integers(0, 0xFFFF)),
            draw(st.sampled_from((len(value),) * 4) | st.integers(0, 2**32 - 1)),
        )
        parts.append(header + encoded + value)
        if op == 1:
            puts.append((key, value))
    payload = b"".join(parts)
    if draw(st.booleans()):
        payload += draw(st.binary(max_size=16))
    op_count = draw(st.sampled_from((count,) * 4) | st.integers(0, 10))
    return payload, op_count, puts


@st.composite
def forged_journals(draw) -> Case:
    """Records with arbitrary fields and operations, each with a valid CRC under the salt."""
    _, sb = formatted()
    offset = sb.region_start(sb.active_region) * SS
    patches = []
    history: list[tuple[str, bytes]] = []
    for seq in range(1, draw(st.integers(1, 6)) + 1):
        payload, op_count, puts = draw(forged_ops())
        history += puts
        header = bytearray(record_header(draw, sb, seq))
        if draw(st.integers(0, 3)):  # mostly keep the header consistent with the payload
            struct.pack_into("<II", header, 24, op_count, len(payload))
        crc = crc32c(payload, crc32c(bytes(header[CRC_COVERS_FROM:]), sb.salt))
        if draw(st.integers(0, 9)) == 0:
            crc ^= 1  # an occasional torn record
        struct.pack_into("<I", header, 4, crc)
        record = bytes(header) + payload
        record += bytes(round_up(len(record), SS) - len(record))
        patches.append((offset, record))
        offset += len(record) + draw(st.sampled_from((0, 0, 0, SS)))
    return Case(tuple(patches), history=tuple(history))


@st.composite
def forged_superblocks(draw) -> Case:
    """A superblock with arbitrary (often near-valid) fields and a correct CRC."""
    _, sb = formatted()
    fields = [
        SUPERBLOCK_MAGIC,
        0,
        draw(st.sampled_from((FORMAT_VERSION,) * 5) | st.integers(0, 0xFFFF)),
        draw(st.sampled_from((SUPERBLOCK_BYTES,) * 5) | st.integers(0, 0xFFFF)),
        draw(st.sampled_from((SS, SS, 0, 1024, 4096)) | st.integers(0, 2**32 - 1)),
        draw(st.sampled_from((SECTORS, SECTORS, SECTORS + 1, 2**40)) | st.integers(0, 2**64 - 1)),
        draw(st.integers(0, 2**64 - 1)),
        draw(st.sampled_from((sb.epoch,)) | st.integers(0, 2**32 - 1)),
        draw(st.sampled_from((0, 1, 2))),
        draw(st.sampled_from((sb.region_sectors, 4, 549, 550)) | st.integers(0, 2**64 - 1)),
        draw(st.sampled_from((sb.volume_id,)) | st.integers(0, 2**64 - 1)),
        draw(st.sampled_from((sb.record_limit, 66048, 66560)) | st.integers(0, 2**32 - 1)),
        draw(st.sampled_from((0, 0, 1, sb.region_sectors, 600)) | st.integers(0, 2**32 - 1)),
    ]
    epoch = fields[7]
    fields.append(
        draw(st.sampled_from((epoch, epoch, (epoch + 1) % 2**32)) | st.integers(0, 2**32 - 1))
    )
    body = SUPERBLOCK.pack(*fields)
    crc = crc32c(body[CRC_COVERS_FROM:])
    body = body[:4] + crc.to_bytes(4, "little") + body[CRC_COVERS_FROM:]
    # Format writes both copies, so a forged copy alone is outvoted by the other; forge both
    # (alike or differently), or one next to a zeroed or intact other.
    slot = draw(st.sampled_from((0, 1)))
    other = draw(st.sampled_from(("same", "same", "zero", "intact", "forged")))
    patches = [(slot * SS, body)]
    if other == "same":
        patches.append(((1 - slot) * SS, body))
    elif other == "zero":
        patches.append(((1 - slot) * SS, bytes(SS)))
    elif other == "forged":
        patches.append(((1 - slot) * SS, draw(forged_superblocks()).patches[0][1]))
    return Case(tuple(patches))


def _fuzz(name: str, strategy, examples: int) -> None:
    outcomes = Outcomes("Fuzz", "journal replay (Store.open)", name)

    @fuzz_settings(examples)
    @seed_decorator()
    @given(strategy)
    def run(case: Case) -> None:
        image = case.image()
        opened = open_image(image, SS)
        check_bounds(opened, len(image), SS)
        if opened.state is not None and case.history:
            check_written(opened.state, case.written())
        elif opened.state is not None:
            assert opened.state == {}, "replay found keys in a journal that holds none"
        again = open_image(image, SS)
        assert (again.state, str(again.error)) == (opened.state, str(opened.error))
        count_open(outcomes, opened)

    run()
    outcomes.commit()


def test_noise_images():
    _fuzz("arbitrary bytes (noise, some behind superblock magic)", noise_images(), 150)


def test_noise_behind_a_valid_superblock():
    _fuzz("valid superblock + noise and record-like headers", patched_journals(), 250)


def test_records_forged_with_valid_crcs():
    _fuzz("records forged with valid CRCs, arbitrary ops", forged_journals(), 200)


def test_superblocks_forged_with_valid_crcs():
    _fuzz("superblocks forged with valid CRCs, arbitrary fields", forged_superblocks(), 250)
