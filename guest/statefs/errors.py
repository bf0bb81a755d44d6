"""The store's one error root.

Every failure the store reports is a :class:`StatefsError`, which is an :class:`OSError`: it
carries an ``errno`` and a message, so statefsd can put the errno on the wire unchanged and
callers can branch on ``exc.errno`` exactly as they would for a file system.
"""

import errno as _errno


class StatefsError(OSError):
    """A store operation failed; ``errno`` says why (ENOENT, EINVAL, ENAMETOOLONG, ...)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)

    def __str__(self) -> str:
        code = self.errno or 0
        return f"[{_errno.errorcode.get(code, code)}] {self.strerror}"


class UnformattedError(StatefsError):
    """The device holds no statefs superblock at all (as opposed to a damaged one)."""

    def __init__(self, message: str) -> None:
        super().__init__(_errno.ENODATA, message)


class CorruptionError(StatefsError):
    """On-disk data that cannot be the result of any crash: reported, never skipped.

    ``where`` names the location (device LBA and byte offset) so an operator can look at it.
    """

    def __init__(self, message: str, *, lba: int | None = None) -> None:
        super().__init__(_errno.EIO, message)
        self.lba = lba
