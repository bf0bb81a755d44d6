"""Who is who in the guest: each service's own uid, gid and groups, and how a process becomes one.

Every service runs under its own credentials, so the kernel keeps them apart (one cannot read
another's memory, signal it or open its files) and statefsd can tell its clients apart by the
peer credentials of their connections. PID 1 stays root: it mounts, loads modules, hands the
block device to statefsd, and runs the selftest.

The numbers are fixed here rather than read from ``/etc/passwd``: the initramfs has none, and a
table in code is what statefsd's policy file names are checked against at start-up.

``statefs-clients`` (``STATEFS_CLIENTS_GID``) is the group that may connect to statefsd's
socket; statefsd itself is not in it, it owns the socket.
"""

import errno
import os

from guest.values import Value

#: Members may connect to statefsd's socket (its runtime directory and socket are this group's).
STATEFS_CLIENTS_GID = 210


class Identity(Value):
    """One service's credentials: user name, uid, primary gid and supplementary groups."""

    __slots__ = ("gid", "groups", "name", "uid")
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]

    def __init__(self, name: str, uid: int, gid: int, groups: tuple[int, ...] = ()) -> None:
        self._set(name=name, uid=uid, gid=gid, groups=tuple(groups))


#: PID 1 and the selftest it runs (the operator of the VM).
INIT = Identity("init", 0, 0)
STATEFSD = Identity("statefsd", 200, 200)
KEYSTORED = Identity("keystored", 201, 201, (STATEFS_CLIENTS_GID,))
UPDATED = Identity("updated", 202, 202, (STATEFS_CLIENTS_GID,))
#: An ordinary, unprivileged guest program: the selftest's denied client runs as it.
APP = Identity("app", 1000, 1000, (STATEFS_CLIENTS_GID,))

IDENTITIES = {identity.name: identity for identity in (INIT, STATEFSD, KEYSTORED, UPDATED, APP)}


def become(identity: Identity) -> None:
    """Drop this process to ``identity`` for good (real, effective and saved ids).

    Groups first, then the gid, then the uid: once the uid is not 0 the others can no longer be
    changed. Afterwards a try to get root back must fail; if it succeeds the drop did not take
    and this raises (EPERM) rather than run a service with more rights than it should have.
    """
    os.setgroups(list(identity.groups))
    os.setresgid(identity.gid, identity.gid, identity.gid)
    os.setresuid(identity.uid, identity.uid, identity.uid)
    if os.getresuid() != (identity.uid,) * 3 or os.getresgid() != (identity.gid,) * 3:
        raise OSError(errno.EPERM, f"could not become {identity.name}")
    if identity.uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            return
        raise OSError(errno.EPERM, f"{identity.name} could get root back after dropping it")
