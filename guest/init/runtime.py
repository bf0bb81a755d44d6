"""The root-only start-up steps that let each service run under its own identity.

Done by init (root) before it forks the services, so that none of them ever needs root:

* the block device belongs to statefsd (mode 0600): statefsd opens and re-opens it as itself,
  nobody else can;
* each service gets a runtime directory of its own under ``/run`` (like systemd's
  ``RuntimeDirectory=``), where it creates and removes its socket as itself.
  statefsd's is ``statefsd:statefs-clients`` mode 2750: members of the clients' group may reach
  the socket, and the set-group-id bit hands that group down to the socket statefsd creates
  there (mode 0660). keystored's and updated's are 0700: only root (the selftest) connects.
"""

import os

from guest.identities import KEYSTORED, STATEFS_CLIENTS_GID, STATEFSD, UPDATED, Identity
from guest.selftest.checks import Sockets

RUN_DIR = "/run"


def _directory(path: str, owner: Identity, group: int, mode: int) -> None:
    os.makedirs(path, exist_ok=True)
    os.chown(path, owner.uid, group)
    os.chmod(path, mode)  # after chown, which clears the set-group-id bit


def prepare(disk: str, run_dir: str = RUN_DIR) -> Sockets:
    """Hand ``disk`` to statefsd, create the runtime directories; the sockets' paths."""
    os.chown(disk, STATEFSD.uid, STATEFSD.gid)
    os.chmod(disk, 0o600)
    _directory(os.path.join(run_dir, "statefsd"), STATEFSD, STATEFS_CLIENTS_GID, 0o2750)
    _directory(os.path.join(run_dir, "keystored"), KEYSTORED, KEYSTORED.gid, 0o700)
    _directory(os.path.join(run_dir, "updated"), UPDATED, UPDATED.gid, 0o700)
    return Sockets.under(run_dir)
