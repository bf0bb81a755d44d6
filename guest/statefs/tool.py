"""The offline tool: look at a statefs image on the host (``python -m guest.statefs``).

A run that failed leaves its disk image behind; these commands read it without a VM::

    python -m guest.statefs fsck IMAGE [--repair]   # exit 0 clean, 1 tolerated damage, 2 not
    python -m guest.statefs ls IMAGE [PREFIX]
    python -m guest.statefs get IMAGE KEY           # the raw value on stdout
    python -m guest.statefs dump IMAGE              # superblocks and every record found

Everything opens the image read-only (``O_RDONLY``), so nothing can change it, except
``fsck --repair``, which does the one write a writable open does: it seals a torn tail. The
sector size comes from the superblock; ``--sector-size`` gives it for an image without one.
"""

import argparse
import errno
import sys
from collections.abc import Iterator

from guest.statefs.blockdev import BlockDevice, FileBlockDevice
from guest.statefs.crc import crc32c
from guest.statefs.errors import StatefsError
from guest.statefs.fsck import FsckReport, check_device
from guest.statefs.layout import (
    CRC_COVERS_FROM,
    JOURNAL_DELETE,
    JOURNAL_PUT,
    OP_HEADER,
    OP_HEADER_BYTES,
    RECORD_HEADER_BYTES,
    RECORD_MAGIC,
    REGION_COUNT,
    SECTOR_SIZES,
    Superblock,
    decode_superblock,
    round_up,
    unpack_record_header,
)
from guest.statefs.store import Store, StoreConfig
from guest.statefs.superblock import read_slots

#: fsck exit codes (stable: scripts branch on them).
CLEAN, TOLERATED, UNRECOVERABLE = 0, 1, 2


def sector_size_of(path: str) -> int | None:
    """The sector size a superblock copy in ``path`` records, or None if neither verifies.

    Slot 0 is at byte 0 whatever the sector size; slot 1 is one sector further, so a copy
    found there counts only if the size it records is that offset."""
    with open(path, "rb") as handle:
        head = handle.read(2 * max(SECTOR_SIZES))
    sb, _ = decode_superblock(head)
    if sb is not None:
        return sb.sector_size
    for size in SECTOR_SIZES:
        sb, _ = decode_superblock(head[size : 2 * size])
        if sb is not None and sb.sector_size == size:
            return size
    return None


def open_image(path: str, sector_size: int | None, *, read_only: bool = True) -> BlockDevice:
    size = sector_size or sector_size_of(path)
    if size is None:
        raise StatefsError(
            errno.ENODATA, f"{path}: no valid superblock to take the sector size from; "
            "give --sector-size",
        )  # fmt: skip
    return FileBlockDevice(path, sector_size=size, read_only=read_only)


def fsck_exit_code(report: FsckReport) -> int:
    if not report.ok:
        return UNRECOVERABLE
    return TOLERATED if report.warnings else CLEAN


def cmd_fsck(args: argparse.Namespace) -> int:
    if args.repair:
        dev = open_image(args.image, args.sector_size, read_only=False)
        if check_device(dev).torn_tail:
            store = Store.open(dev)  # a writable open seals the torn tail and writes nothing else
            print(f"fsck: repaired: sealed the torn tail ({store.counters['seals']} sector)")
            store.close(sync=False)  # no sync, so no checkpoint either
        else:
            dev.close()
    with open_image(args.image, args.sector_size) as dev:
        report = check_device(dev)
    for line in report.lines():
        print(line)
    return fsck_exit_code(report)


def _open_store(args: argparse.Namespace) -> Store:
    return Store.open(open_image(args.image, args.sector_size), StoreConfig(read_only=True))


def cmd_ls(args: argparse.Namespace) -> int:
    with _open_store(args) as store:
        for key in store.list(args.prefix):
            print(key)
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    with _open_store(args) as store:
        value = store.get(args.key)
    sys.stdout.buffer.write(value)
    sys.stdout.buffer.flush()
    return 0


def _ops(payload: bytes, op_count: int) -> Iterator[str]:
    pos = 0
    for _ in range(op_count):
        if pos + OP_HEADER_BYTES > len(payload):
            yield "(operation header runs past the payload)"
            return
        op, _flags, key_len, value_len = OP_HEADER.unpack_from(payload, pos)
        pos += OP_HEADER_BYTES
        key = payload[pos : pos + key_len].decode("utf-8", "backslashreplace")
        name = {JOURNAL_PUT: "PUT", JOURNAL_DELETE: "DELETE"}.get(op, f"op {op}")
        yield f"{name} {key!r}" + (f" ({value_len} bytes)" if op == JOURNAL_PUT else "")
        pos += key_len + value_len


def dump_region(dev: BlockDevice, sb: Superblock, region: int) -> Iterator[str]:
    """Every sector of ``region`` that starts a record whose CRC verifies under this volume,
    in order, whatever its epoch (stale records included: that is what debugging needs)."""
    ss = sb.sector_size
    start = sb.region_start(region)
    lba = start
    while lba < start + sb.region_sectors:
        head = dev.read(lba, 1)
        if not head.startswith(RECORD_MAGIC):
            lba += 1
            continue
        header = unpack_record_header(head)
        total = RECORD_HEADER_BYTES + header.payload_bytes
        sectors = round_up(total, ss) // ss
        if header.payload_bytes > sb.record_limit or lba + sectors > start + sb.region_sectors:
            yield f"  LBA {lba}: record magic, length {header.payload_bytes} out of bounds"
            lba += 1
            continue
        data = dev.read(lba, sectors)
        if crc32c(data[CRC_COVERS_FROM:total], sb.salt) != header.crc:
            yield f"  LBA {lba}: record magic, seq {header.seq}: crc mismatch"
            lba += 1
            continue
        current = " (current epoch)" if header.epoch == sb.epoch else ""
        yield (
            f"  LBA {lba}: epoch {header.epoch}{current} seq {header.seq} flags "
            f"{header.flags} {header.op_count} ops, {header.payload_bytes} bytes"
        )
        for line in _ops(data[RECORD_HEADER_BYTES:total], header.op_count):
            yield f"      {line}"
        lba += sectors


def cmd_dump(args: argparse.Namespace) -> int:
    with open_image(args.image, args.sector_size) as dev:
        slots = read_slots(dev)
        valid = [state.superblock for state in slots if state.superblock is not None]
        for state in slots:
            sb = state.superblock
            if sb is not None:
                print(
                    f"superblock slot {state.slot}: generation {sb.generation}, region "
                    f"{sb.active_region}, epoch {sb.epoch}, ceiling {sb.epoch_ceiling}, "
                    f"snapshot {sb.snapshot_sectors} sectors, volume {sb.volume_id:#018x}, "
                    f"record limit {sb.record_limit}, {sb.sector_count} x {sb.sector_size} B"
                )
            else:
                print(f"superblock slot {state.slot}: {state.reason}")
        if not valid:
            print("no valid superblock: records cannot be verified without the volume id")
            return UNRECOVERABLE
        newest = max(valid, key=lambda sb: sb.generation)
        for region in range(REGION_COUNT):
            active = " (active)" if region == newest.active_region else ""
            print(f"region {region}{active}: LBA {newest.region_start(region)}..")
            for line in dump_region(dev, newest, region):
                print(line)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m guest.statefs", description=__doc__.split("\n")[0]
    )
    commands = top.add_subparsers(dest="command", required=True)

    def command(name: str, about: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=about, description=about)
        sub.add_argument("image", help="disk image file")
        sub.add_argument("--sector-size", type=int, choices=SECTOR_SIZES,
                         help="sector size, for an image whose superblocks do not say")  # fmt: skip
        return sub

    fsck = command("fsck", "check the image: exit 0 clean, 1 damage replay tolerates, 2 not")
    fsck.add_argument("--repair", action="store_true", help="seal a torn tail (the only write)")
    fsck.set_defaults(run=cmd_fsck)
    ls = command("ls", "list the keys (below PREFIX)")
    ls.add_argument("prefix", nargs="?", default="/state")
    ls.set_defaults(run=cmd_ls)
    get = command("get", "write the raw value of KEY to stdout")
    get.add_argument("key")
    get.set_defaults(run=cmd_get)
    command("dump", "list both superblock copies and every verifying record").set_defaults(
        run=cmd_dump
    )
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except OSError as exc:  # StatefsError (damage, no such key, ...) or the file's own error
        code = errno.errorcode.get(exc.errno or 0, "EIO")
        print(f"statefs {args.command}: {code}: {exc.strerror or exc}", file=sys.stderr)
        return UNRECOVERABLE if args.command == "fsck" else 1


if __name__ == "__main__":
    sys.exit(main())
