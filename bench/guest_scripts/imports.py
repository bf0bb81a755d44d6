"""Guest start-up profile, part 1: the interpreter and the imports PID 1 pays for.

Measured inside the VM because TCG changes the proportions: emulated code is tens of times
slower than on the host, and per-byte work (unmarshalling ``.pyc`` files) hurts most. Prints
``BENCH: <name> seconds=<s>`` for fresh interpreters (bare, importing PID 1, importing the
contract modules) and the ``-X importtime`` output of ``import guest.init.contract`` (what PID 1
imports before the disk probe) as ``PROF|`` lines.
"""

import os
import time

from guest.console import emit

PYTHON = "/usr/bin/python3.11"
FLAGS = "-ISB"  # what /init's #! line uses


def uptime():
    with open("/proc/uptime") as handle:
        return float(handle.read().split()[0])


def spawn(argv):
    """Run ``argv`` with stderr on a pipe; return (seconds, stderr text)."""
    read_fd, write_fd = os.pipe()
    actions = [(os.POSIX_SPAWN_DUP2, write_fd, 2), (os.POSIX_SPAWN_CLOSE, read_fd)]
    started = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, {}, file_actions=actions)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.waitpid(pid, 0)
    elapsed = time.perf_counter() - started
    os.close(read_fd)
    return elapsed, b"".join(chunks).decode("utf-8", "replace")


def interpreter():
    for name, argv in (
        ("busybox-true", ["/bin/busybox", "true"]),
        ("python-bare", [PYTHON, FLAGS, "-c", "pass"]),
        ("python-import-pid1", [PYTHON, FLAGS, "-c", "import guest.init.pid1"]),
        ("python-import-contract", [PYTHON, FLAGS, "-c", "import guest.init.contract"]),
    ):
        for _ in range(3):
            emit(f"BENCH: {name} seconds={spawn(argv)[0]:.6f}")
    for module in ("guest.init.pid1", "guest.init.contract"):
        _, text = spawn([PYTHON, FLAGS, "-X", "importtime", "-c", "import " + module])
        for line in text.splitlines():
            emit(f"PROF|{module}| {line}")


def main():
    emit(f"BENCH: script-start uptime={uptime():.3f}")
    interpreter()


if __name__ == "__sq_script__":
    main()
