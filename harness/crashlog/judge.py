"""The host's verdict on one crash state of a guest run: open it with statefs, check the workload.

The image is opened the way statefsd opens its disk, with the host's own copy of the store
(:mod:`guest.statefs`), read-only so that thousands of states cost no writes:

* no store at all (a blank disk, or a first format that never completed) is what statefsd
  formats: the empty state, head 0;
* a store: the power-cut workload's own check (:func:`guest.selftest.powercut.check`) reads
  the head ``m`` and requires exactly the log entries ``m - WINDOW + 1 .. m``, each with its
  derived value (a prefix of what was issued, nothing invented or altered);
* a refusal (``EIO``, ``EMEDIUMTYPE``...) is a failure: a crash never makes bytes a correct
  store may refuse.

Then ``m`` must be one of the heads the recording allows for the state's crash points
(:mod:`harness.crashlog.history`): below them an acknowledged write was lost, above them the
store returned a write that had not been issued.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from guest.selftest.powercut import check
from guest.statefs import Store, StoreConfig, UnformattedError
from guest.statefs.errors import StatefsError
from harness.crashsim import CrashState, OverlayDevice

_READ_ONLY = StoreConfig(read_only=True)


class _StoreReader:
    """What :func:`check` needs of a client (``list``, ``get``), over an open store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def list(self, prefix: str) -> list[str]:
        return self._store.list(prefix)

    def get(self, key: str) -> bytes:
        return self._store.get(key)


@dataclass(frozen=True)
class Verdict:
    """``head``: what the host recovered (None if it could not); ``problem``: "" if the state
    passed, else why not."""

    head: int | None
    problem: str = ""

    @property
    def passed(self) -> bool:
        return not self.problem


def recover_head(state: CrashState, sector_size: int, nonce: str) -> int:
    """The head the host's statefs recovers from ``state`` (0 for no store). Raises
    StatefsError if the store refuses the image, ValueError if the workload check fails."""
    device = OverlayDevice(state.base, sector_size, state.overlay)
    try:
        store = Store.open(device, _READ_ONLY)
    except UnformattedError:
        return 0
    try:
        # check() is written against the client; the reader has the two methods it uses.
        reader: Any = _StoreReader(store)
        return check(reader, nonce)
    finally:
        store.close(sync=False)


def judge(state: CrashState, sector_size: int, nonce: str, allowed: list[int]) -> Verdict:
    """Recover ``state`` and compare with the heads it may hold (module docstring)."""
    try:
        head = recover_head(state, sector_size, nonce)
    except StatefsError as exc:
        return Verdict(None, f"the store refused the image: {exc}")
    except ValueError as exc:
        return Verdict(None, f"the workload check failed: {exc}")
    if head in allowed:
        return Verdict(head)
    if not allowed:
        return Verdict(head, f"head {head}, but the recording allows no state here")
    if head < allowed[0]:
        return Verdict(head, f"head {head}: acknowledged write {allowed[0]} lost")
    return Verdict(head, f"head {head}: write beyond {allowed[-1]}, never issued, present")
