"""The proof behind ``SELFTEST: statefs deny ok``: statefsd's policy holds against a client
that is allowed to connect but not to touch the device key or boot control.

A child of init drops to the ``app`` identity (an ordinary guest program: a member of the
clients' group, with state of its own under ``/state/app``) and tries, over its own
connection, to read the device key's seed (also by a non-normal spelling of its key), to list
the keystore, and to write the boot record (a synced PUT and a BATCH). As a control it first
puts a key of its own, so a broken connection cannot pass for a denial. It reports each
attempt's errno to init over a pipe; init then checks, as root, that the boot record is byte
for byte what it was and that statefsd counted exactly those denials (each one is audited on
the console, which the contract also requires). The host tests try every operation on every
prefix (``tests/statefsd/test_access.py``); this is the proof in the VM, kept to the requests
that make it, because every request costs boot time under emulation.
"""

import errno
import json
import os

from guest.identities import APP, Identity, become
from guest.keystored.keys import SEED_KEY
from guest.statefs.errors import StatefsError
from guest.statefsd.client import StatefsClient
from guest.updated.bootctl import BOOTCTL_KEY

OWN_KEY = "/state/app/selftest-probe"
HOSTILE_VALUE = b'{"current": "hostile"}'
#: Each attempt of the unprivileged client and the errno it must get (0: it must succeed).
EXPECTED = {
    "put own key": 0,
    "read device key seed": errno.EACCES,
    "read device key seed, non-normal key": errno.EACCES,
    "list keystore": errno.EACCES,
    "write boot record": errno.EACCES,
    "batch-write boot record": errno.EACCES,
}
DENIALS = sum(1 for code in EXPECTED.values() if code)


def _attempts(client: StatefsClient) -> dict[str, object]:
    """Run every attempt; the value is the errno it got (0 for success)."""
    actions = {
        "put own key": lambda: client.put(OWN_KEY, os.urandom(8).hex().encode()),
        "read device key seed": lambda: client.get(SEED_KEY),
        "read device key seed, non-normal key": lambda: client.get(
            SEED_KEY.replace("/state/keystore/", "/state//keystore//")
        ),
        "list keystore": lambda: client.list("/state/keystore"),
        "write boot record": lambda: client.put(BOOTCTL_KEY, HOSTILE_VALUE, sync=True),
        "batch-write boot record": lambda: client.batch([(BOOTCTL_KEY, HOSTILE_VALUE)]),
    }
    results: dict[str, object] = {}
    for name, action in actions.items():
        try:
            action()
        except StatefsError as exc:
            results[name] = exc.errno
        else:
            results[name] = 0
    return results


def probe_as(identity: Identity, socket_path: str) -> dict[str, object]:
    """Fork, drop to ``identity``, run the attempts against statefsd; their errnos."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the unprivileged client: never returns into init's code
        code = 1
        try:
            os.close(read_end)
            become(identity)
            with StatefsClient.connect(socket_path, wait=5.0) as client:
                report: dict[str, object] = _attempts(client)
            code = 0
        except BaseException as exc:  # noqa: BLE001 - report anything to init, then exit
            report = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            os.write(write_end, json.dumps(report).encode())
            os._exit(code)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks) or b'{"error": "the client said nothing"}')


def check_deny(statefs: StatefsClient, socket_path: str, identity: Identity = APP) -> str | None:
    """Run the unprivileged client and judge it; None if the policy held, else the reason."""
    before = statefs.get(BOOTCTL_KEY)
    denied_before = statefs.stats()["server_denied"]
    results = probe_as(identity, socket_path)
    if "error" in results:
        return f"the {identity.name} client failed: {results['error']}"
    for name, wanted in EXPECTED.items():
        got = results.get(name)
        if got != wanted:
            shown = "success"
            if isinstance(got, int) and got:
                shown = errno.errorcode.get(got, str(got))
            expected = errno.errorcode.get(wanted, wanted) if wanted else "success"
            return f"{identity.name}: {name} gave {shown}, expected {expected}"
    after = statefs.get(BOOTCTL_KEY)
    if after != before:
        return f"the boot record changed under the denied client: {after!r}"
    counted = statefs.stats()["server_denied"] - denied_before
    if counted != DENIALS:
        return f"statefsd counted {counted} denials, expected {DENIALS}"
    return None
