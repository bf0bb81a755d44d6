"""PID 1 of the VM.

The kernel runs ``/init`` from the initramfs, a launcher that calls :func:`main`. We mount the
pseudo filesystems, load the virtio modules the image lists, read our parameters from the kernel
command line (``sq.*``), run the requested mode and power the VM off. PID 1 must never exit (the
kernel panics when it does), so every failure is reported on the console as ``init: fatal ...``
and followed by a clean power-off.

Kernel command line parameters (all optional):

``sq.mode=contract|powercut|script|shell``
    what to run; ``contract`` (the default) runs the services and the selftests;
    ``powercut`` checks what the previous boot left and writes until the power is cut.
``sq.script=<base64>``
    with ``sq.mode=script``: Python source to execute (harness tests, marker debugging).
"""

import base64
import os
import sys

from guest.console import emit, emit_traceback
from guest.init.supervisor import ServiceError

BUSYBOX = "/bin/busybox"
MODULE_LIST = "/etc/statefs-qemu/modules"


def run(argv: list[str]) -> int:
    """Run a program and wait for it; avoids importing ``subprocess`` (boot time under TCG)."""
    pid = os.posix_spawn(argv[0], argv, os.environ)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def mount_pseudo_filesystems() -> None:
    for fstype, target in (("proc", "/proc"), ("sysfs", "/sys"), ("devtmpfs", "/dev")):
        os.makedirs(target, exist_ok=True)
        if os.path.ismount(target):
            continue
        code = run([BUSYBOX, "mount", "-t", fstype, fstype, target])
        if code != 0:
            raise OSError(f"mount -t {fstype} {target} failed with exit code {code}")
    os.makedirs("/run", exist_ok=True)
    os.makedirs("/tmp", exist_ok=True)


def load_modules(list_path: str = MODULE_LIST) -> list[str]:
    """insmod each module the image lists, in order; return the names loaded."""
    try:
        with open(list_path, encoding="utf-8") as handle:
            paths = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    except FileNotFoundError:
        return []
    loaded = []
    for path in paths:
        code = run([BUSYBOX, "insmod", path])
        if code != 0:
            raise OSError(f"insmod {path} failed with exit code {code}")
        loaded.append(os.path.basename(path).removesuffix(".ko"))
    return loaded


def kernel_params(cmdline: str) -> dict[str, str]:
    """The ``sq.*`` parameters of a kernel command line, as a dict (``sq.`` prefix kept)."""
    params = {}
    for word in cmdline.split():
        if word.startswith("sq."):
            key, _, value = word.partition("=")
            params[key] = value
    return params


def read_kernel_params() -> dict[str, str]:
    with open("/proc/cmdline", encoding="utf-8") as handle:
        return kernel_params(handle.read())


def run_script(params: dict[str, str]) -> None:
    encoded = params.get("sq.script", "")
    if not encoded:
        raise ValueError("sq.mode=script needs sq.script=<base64 python source>")
    source = base64.b64decode(encoded, validate=True).decode("utf-8")
    exec(compile(source, "<sq.script>", "exec"), {"__name__": "__sq_script__"})


def run_shell(_params: dict[str, str]) -> None:
    emit("init: interactive shell (exit to power off)")
    run([BUSYBOX, "sh"])


def run_contract(params: dict[str, str]) -> None:
    from guest.init.contract import run_contract as contract

    contract(params)


def run_powercut(params: dict[str, str]) -> None:
    from guest.init.contract import run_powercut_boot

    run_powercut_boot(params)


MODES = {
    "contract": run_contract,
    "powercut": run_powercut,
    "script": run_script,
    "shell": run_shell,
}


def power_off() -> None:
    os.sync()
    run([BUSYBOX, "poweroff", "-f"])


def main() -> None:
    try:
        mount_pseudo_filesystems()
        emit(f"init: started (python {sys.version.split()[0]})")
        params = read_kernel_params()
        load_modules()
        mode = params.get("sq.mode", "contract")
        handler = MODES.get(mode)
        if handler is None:
            raise ValueError(f"unknown sq.mode={mode!r} (known: {', '.join(sorted(MODES))})")
        handler(params)
        emit("init: done, powering off")
    except (OSError, ValueError, ServiceError) as exc:
        # Expected failures (a service that would not start, a bad parameter, a missing
        # device) already say what went wrong; a traceback would only bury that line.
        emit(f"init: fatal {type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - PID 1 must survive anything to report it and power off
        emit(f"init: fatal {type(exc).__name__}: {exc}")
        emit_traceback()
    finally:
        power_off()
