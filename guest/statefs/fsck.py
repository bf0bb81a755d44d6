"""fsck: check a statefs device and say what was found, without changing anything."""

from guest.statefs.blockdev import BlockDevice
from guest.statefs.replay import replay
from guest.statefs.superblock import read_slots, select


class FsckReport:
    """What :func:`check_device` found. ``ok`` is False if anything is in ``errors``."""

    def __init__(self) -> None:
        self.slots: list[dict[str, object]] = []
        self.current_slot: int | None = None
        #: "" or how the superblock was rebuilt from a damaged current copy.
        self.rebuilt = ""
        self.generation: int | None = None
        self.epoch: int | None = None
        self.active_region: int | None = None
        self.records = 0
        self.ops = 0
        self.live_keys = 0
        self.live_bytes = 0
        self.journal_bytes = 0
        self.region_bytes = 0
        self.tail_reason = ""
        self.torn_tail = False
        self.errors: list[str] = []
        self.warnings: list[str] = []

    @property
    def ok(self) -> bool:
        return not self.errors

    def lines(self) -> list[str]:
        """A short human-readable report, one finding per line."""
        out = [
            f"fsck: {'clean' if self.ok else 'DAMAGED'}: generation {self.generation} "
            f"(slot {self.current_slot}), region {self.active_region}, epoch {self.epoch}",
            f"fsck: {self.records} records, {self.ops} operations, {self.live_keys} live keys "
            f"({self.live_bytes} bytes); journal {self.journal_bytes}/{self.region_bytes} bytes; "
            f"tail: {self.tail_reason}{' (torn)' if self.torn_tail else ''}",
        ]
        for slot in self.slots:
            out.append(f"fsck: superblock slot {slot['slot']}: {slot['state']}")
        out += [f"fsck: warning: {warning}" for warning in self.warnings]
        out += [f"fsck: error: {error}" for error in self.errors]
        return out


def check_device(dev: BlockDevice, expected: dict[str, bytes] | None = None) -> FsckReport:
    """Check ``dev``: both superblock copies, a full replay, and (if given) that the replayed
    state equals ``expected`` (an open store's committed state)."""
    report = FsckReport()
    try:
        slots = read_slots(dev)
    except OSError as exc:
        report.errors.append(f"cannot read the superblocks: {exc}")
        return report
    for state in slots:
        sb = state.superblock
        text = f"valid, generation {sb.generation}" if sb is not None else state.reason
        report.slots.append({"slot": state.slot, "state": text, "valid": state.valid})
    try:
        current = select(dev, slots)
    except OSError as exc:  # StatefsError (no usable superblock) or a device read error
        report.errors.append(str(exc))
        return report
    sb = current.superblock
    report.current_slot = current.slot
    report.rebuilt = current.rebuilt
    report.generation = sb.generation
    report.epoch = sb.epoch
    report.active_region = sb.active_region
    report.region_bytes = sb.region_bytes
    for state in slots:
        if state.slot != current.slot and state.reason != "" and current.rebuilt:
            report.warnings.append(f"{current.rebuilt} (nothing lost)")
        elif state.slot != current.slot and state.reason != "":
            report.warnings.append(
                f"superblock slot {state.slot}: {state.reason} (what a torn superblock write "
                "leaves; the other region holds no complete snapshot of its compaction, so "
                "nothing committed depended on it: the other copy is used)"
            )
    try:
        result = replay(dev, sb)
    except OSError as exc:  # StatefsError (damage) or a device read error
        report.errors.append(str(exc))
        return report
    report.records = result.records
    report.ops = result.ops
    report.live_keys = len(result.live)
    report.live_bytes = result.live_bytes
    report.journal_bytes = result.end_offset
    report.tail_reason = result.tail_reason
    report.torn_tail = result.torn_tail
    if result.torn_tail:
        lba = sb.region_start(sb.active_region) + result.end_offset // sb.sector_size
        report.warnings.append(
            f"torn record at LBA {lba}"
            f" (journal byte {result.end_offset}, a crash during sync); it is sealed on the next "
            "writable open"
        )
    if expected is not None and result.live != expected:
        missing = sorted(set(expected) - set(result.live))
        extra = sorted(set(result.live) - set(expected))
        changed = sorted(
            k for k in set(expected) & set(result.live) if expected[k] != result.live[k]
        )
        report.errors.append(
            f"device state differs from the open store: {len(missing)} missing, "
            f"{len(extra)} extra, {len(changed)} changed (first: {(missing + extra + changed)[:3]})"
        )
    return report
