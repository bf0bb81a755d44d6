"""Run a function in a forked child that has dropped to another uid; get its JSON result.

The host tests run as root, so a child can become any user: that is how they act as keystored,
as an ordinary program, or as a uid no service has, against a real socket, with the kernel
(``SO_PEERCRED``) telling the server who they are.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from guest.identities import Identity, become


class Child:
    """A forked child running ``work()`` as another identity; :meth:`result` waits for it."""

    def __init__(self, identity: Identity, work: Callable[[], object]) -> None:
        self.identity = identity
        read_end, write_end = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            code = 1
            try:
                os.close(read_end)
                become(identity)
                data = json.dumps({"result": work()})
                code = 0
            except BaseException as exc:  # noqa: BLE001 - report anything, then leave the child
                data = json.dumps({"error": f"{type(exc).__name__}: {exc}"})
            finally:
                os.write(write_end, data.encode())
                os._exit(code)
        os.close(write_end)
        self._read_end = read_end

    def result(self) -> object:
        """The child's JSON-able result; AssertionError with its message if it failed."""
        chunks = []
        while chunk := os.read(self._read_end, 1 << 16):
            chunks.append(chunk)
        os.close(self._read_end)
        os.waitpid(self.pid, 0)
        reply = json.loads(b"".join(chunks) or b'{"error": "the child said nothing"}')
        if "error" in reply:
            raise AssertionError(f"as {self.identity.name}: {reply['error']}")
        return reply["result"]


def run_as(identity: Identity, work: Callable[[], object]) -> object:
    """``work()`` as ``identity`` in a child, waited for; its JSON-able result."""
    return Child(identity, work).result()


def stranger(uid: int = 4242) -> Identity:
    """A user no service has (not in the clients' group, not in the policy)."""
    return Identity(f"uid{uid}", uid, uid)
