"""Deliberately broken stores, to prove the crash simulator catches what it claims to.

Each mutant is applied with pytest's ``monkeypatch`` (undone after the test) and counts how
often its broken code ran, so a test can tell "the simulator found nothing" from "the mutant
never ran". Where a mutant must reorder or drop device operations, it does so through a proxy
device around the store's real one for the duration of the store method, so the store's own
code still does all the work (no copy of it here to drift out of date); the one mutant that
must change a line inside replay does so by patching that line of the real source and fails
loudly if the line is no longer there.
"""

import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass

import pytest

import guest.statefs.fsck as fsck_module
import guest.statefs.replay as replay_module
import guest.statefs.store as store_module
import guest.statefs.superblock as superblock_module
from guest.statefs.layout import EPOCH_MASK, SUPERBLOCK_SLOTS
from guest.statefs.store import Store


class Calls:
    """How many times a mutant's broken path ran."""

    def __init__(self) -> None:
        self.count = 0


class _Proxy:
    """A device wrapper that forwards everything but what a mutant overrides."""

    def __init__(self, real) -> None:
        self._real = real

    def __getattr__(self, name: str):
        return getattr(self._real, name)


class _SuperblockFirst(_Proxy):
    """Holds the compaction's data writes until the superblock write after them has been
    flushed: the commit is written (and made durable) before the data it names. (The epoch
    reservation, a superblock write before any data, passes through unchanged.)"""

    def __init__(self, real) -> None:
        super().__init__(real)
        self._held: list[tuple[int, bytes]] = []
        self._committed = False

    def write(self, lba: int, data) -> None:
        if lba >= SUPERBLOCK_SLOTS and not self._committed:
            self._held.append((lba, bytes(data)))
            return
        self._real.write(lba, data)
        if not self._held or self._committed:
            return
        self._real.flush()
        self._committed = True
        for held_lba, held in self._held:
            self._real.write(held_lba, held)

    def flush(self) -> None:
        if self._committed or not self._held:
            self._real.flush()


class _NoBarrier(_Proxy):
    """Drops the flush between the compaction's data and its superblock write."""

    def write(self, lba: int, data) -> None:
        self._after_data = lba >= SUPERBLOCK_SLOTS
        self._real.write(lba, data)

    def flush(self) -> None:
        if getattr(self, "_after_data", False) and not getattr(self, "_dropped", False):
            self._dropped = True
            return
        self._real.flush()


class _NoFlush(_Proxy):
    """Drops every flush: ``sync()`` returns before its record is durable."""

    def flush(self) -> None:
        return None


class _ReverseSectors(_Proxy):
    """Writes a record's sectors last to first, flushing after each one. Not a bug in this
    format (the record's CRC covers every sector, so no subset of them verifies): the control
    that shows the oracle does not flag a correct variant."""

    def write(self, lba: int, data) -> None:
        ss = self._real.sector_size
        for index in reversed(range(len(data) // ss)):
            self._real.write(lba + index, bytes(data[index * ss : (index + 1) * ss]))
            self._real.flush()


def _through(proxy_class: type, method: Callable, calls: Calls) -> Callable:
    """``method`` run with the store's device swapped for ``proxy_class(device)``."""

    def mutated(self, *args, **kwargs):
        calls.count += 1
        real = self._dev
        self._dev = proxy_class(real)
        try:
            return method(self, *args, **kwargs)
        finally:
            self._dev = real

    return mutated


def _replay_without_epoch_check() -> Callable:
    """The real ``replay`` with its epoch comparison made dead."""
    source = textwrap.dedent(inspect.getsource(replay_module.replay))
    needle = "        if epoch != sb.epoch:\n"
    if source.count(needle) != 1:
        raise AssertionError("replay's epoch check moved; update the no-epoch-check mutant")
    source = source.replace(needle, "        if False and epoch != sb.epoch:\n")
    namespace = dict(vars(replay_module))
    exec(compile(source, replay_module.__file__, "exec"), namespace)
    return namespace["replay"]


def _counting(function: Callable, calls: Calls) -> Callable:
    def counted(*args, **kwargs):
        calls.count += 1
        return function(*args, **kwargs)

    return counted


@dataclass(frozen=True)
class Mutant:
    """A broken store: ``apply`` patches it in and returns the call counter.

    ``workloads``: the workloads that must catch it (the fewest that do, to keep the test
    fast); ``histories``: ``(history, branch)`` subtrees that must catch it, for bugs only a
    crash-recover-continue history reaches. ``bug``: False for the control, a correct
    variant that must *not* be flagged.
    """

    name: str
    about: str
    workloads: tuple[str, ...]
    apply: Callable[[pytest.MonkeyPatch], Calls]
    bug: bool = True
    histories: tuple[tuple[str, int], ...] = ()
    #: Stop a history at the first failing damage check too (the mutant breaks only that).
    damage_only: bool = False


def _crc_disabled(monkeypatch: pytest.MonkeyPatch) -> Calls:
    calls = Calls()
    monkeypatch.setattr(replay_module, "_verify", _counting(lambda *_args: True, calls))
    return calls


def _store_method(name: str, proxy_class: type) -> Callable[[pytest.MonkeyPatch], Calls]:
    def apply(monkeypatch: pytest.MonkeyPatch) -> Calls:
        calls = Calls()
        monkeypatch.setattr(Store, name, _through(proxy_class, getattr(Store, name), calls))
        return calls

    return apply


def _no_seal(monkeypatch: pytest.MonkeyPatch) -> Calls:
    calls = Calls()

    def skip_seal(_self) -> None:
        calls.count += 1

    monkeypatch.setattr(Store, "_seal", skip_seal)
    return calls


def _no_epoch_check(monkeypatch: pytest.MonkeyPatch) -> Calls:
    calls = Calls()
    mutated = _counting(_replay_without_epoch_check(), calls)
    for module in (replay_module, store_module, fsck_module):
        monkeypatch.setattr(module, "replay", mutated)
    return calls


def _attribute(owner: object, name: str, mutant: str):
    """``owner.name``, or a loud failure naming the mutant to update when the store moved it."""
    found = getattr(owner, name, None)
    if found is None:
        raise AssertionError(f"{owner!r} has no {name} any more; update the {mutant} mutant")
    return found


def _epoch_reuse(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Compaction takes the current epoch + 1, as the store did before epochs were reserved:
    after a compaction cut past its snapshot, the next one into that region reuses the epoch
    of the aborted snapshot's records."""
    calls = Calls()
    _attribute(Store, "_next_epoch", "epoch-reuse")

    def next_epoch(self) -> int:
        calls.count += 1
        return (self._sb.epoch + 1) & EPOCH_MASK

    monkeypatch.setattr(Store, "_next_epoch", next_epoch)
    return calls


def _no_tail_protection(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Compaction takes a fresh epoch but does not make it durable before writing records of
    it (no reservation superblock): nothing on the disk then protects the region's tail, the
    bytes past a later journal's end, from a compaction cut before its switch."""
    calls = Calls()
    real = _attribute(Store, "_write_superblock", "no-tail-protection")

    def write_superblock(self, sb) -> None:
        current = self._sb
        if sb.active_region == current.active_region and sb.epoch == current.epoch:
            calls.count += 1  # the reservation: skipped
            return
        if sb.epoch_ceiling != sb.epoch and sb.active_region != current.active_region:
            sb = sb.replace(epoch_ceiling=sb.epoch)  # the switch carries the ceiling itself
        real(self, sb)

    monkeypatch.setattr(Store, "_write_superblock", write_superblock)
    return calls


def _fallback_unchecked(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Open falls back to the older superblock copy when the current one is damaged, without
    looking for commit groups appended under the damaged one (they are dropped silently)."""
    calls = Calls()
    _attribute(superblock_module, "select", "superblock-fallback-unchecked")

    def select(_dev, slots):
        current = superblock_module.choose(slots)
        peer = slots[1 - current.slot]
        damaged = not peer.valid and peer.reason != "empty"
        calls.count += damaged
        return superblock_module.Selection(current.superblock, current.slot, damaged, "")

    monkeypatch.setattr(store_module, "select_superblock", select)
    monkeypatch.setattr(fsck_module, "select", select)
    return calls


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "crc-disabled",
        "replay accepts every record without checking its CRC (replay._verify -> True)",
        ("large-groups",),
        _crc_disabled,
    ),
    Mutant(
        "superblock-before-data",
        "compaction writes and flushes the superblock naming the new region before the data",
        ("explicit-compact",),
        _store_method("_compact", _SuperblockFirst),
    ),
    Mutant(
        "no-barrier-before-superblock",
        "compaction has no flush between its data and the superblock write",
        ("explicit-compact",),
        _store_method("_compact", _NoBarrier),
    ),
    Mutant(
        "no-seal",
        "open does not seal a torn tail (Store._seal is a no-op)",
        ("torn-tail",),
        _no_seal,
    ),
    Mutant(
        "no-epoch-check",
        "replay ignores the record epoch, so stale records behind the journal's end count",
        ("overwrite-churn",),
        _no_epoch_check,
    ),
    Mutant(
        "sync-without-flush",
        "sync returns before its record is flushed (the commit is acknowledged, not durable)",
        ("small-groups",),
        _store_method("_append", _NoFlush),
    ),
    Mutant(
        "epoch-reuse",
        "compaction reuses the epoch of an aborted compaction (current epoch + 1)",
        (),
        _epoch_reuse,
        histories=(("history-512", 0),),
    ),
    Mutant(
        "no-tail-protection",
        "compaction writes records of a new epoch before any superblock reserves it",
        (),
        _no_tail_protection,
        histories=(("history-512", 0),),
    ),
    Mutant(
        "superblock-fallback-unchecked",
        "a damaged current superblock falls back to the older copy, dropping later commits",
        (),
        _fallback_unchecked,
        histories=(("history-512", 0),),
        damage_only=True,
    ),
    Mutant(
        "reversed-record-sectors",
        "control: sync writes a record's sectors last to first with a flush after each",
        ("small-groups", "large-groups", "torn-tail"),
        _store_method("_append", _ReverseSectors),
        bug=False,
    ),
)

BY_NAME = {mutant.name: mutant for mutant in MUTANTS}
