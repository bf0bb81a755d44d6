"""A stand-in for qemu-system-*: enough QMP and serial behaviour to test the lifecycle.

It reads the same argv the harness gives real QEMU (``-chardev socket,...path=``, ``-append``,
``-drive file=``), connects to the harness's console and QMP sockets like QEMU does, and then
behaves as ``FAKE_QEMU_MODE`` says:

``normal``      print ``FAKE_QEMU_CONSOLE`` (``\\n``-separated; ``@sleep S`` lines pause), then
                idle until QMP ``quit`` or a signal.
``poweroff``    print the console, then announce SHUTDOWN (guest-shutdown) and exit 0.
``contract``    act like the guest's PID 1: ``sq.mode=script`` runs ``sq.script`` (a fatal line
                and a traceback if it raises, nothing if it calls sys.exit, ``init: done``
                if it returns); otherwise the contract run: check ``sq.nonce`` as PID 1
                does, read ``sq.boot`` and print its markers. Boot 1 formats the disk file
                (refused with ``statefsd: fatal EMEDIUMTYPE`` when it is neither blank nor
                formatted, unless ``sq.format=force``) and stores a fingerprint and its boot
                number; boot 2 checks the last record is boot 1's, like the reboot check.
                ``FAKE_QEMU_FAIL=<marker text>`` prints that marker as a FAIL instead.
``lock-fail``   connect the console and QMP, then fail like QEMU on a locked disk (stderr
                ``FAKE_QEMU_STDERR``) and exit 1 without a QMP greeting.
``exit-early``  complain on stderr (``FAKE_QEMU_STDERR``, default a bad -drive) and exit 1
                before connecting.
``hang``        never connect (a launch timeout).
``stubborn``    answer ``quit`` but keep running, ignore SIGTERM (forces SIGKILL).
``flood``       print ``FAKE_QEMU_LINES`` numbered lines as fast as possible, then power off.

Only the standard library: it runs under whatever python3 the wrapper script names.
"""

import base64
import hashlib
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback


def option_value(argv, flag, key, match=None):
    for index, arg in enumerate(argv[:-1]):
        if arg != flag:
            continue
        value = argv[index + 1]
        fields = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
        if match is not None and fields.get(match[0]) != match[1]:
            continue
        if key in fields:
            return fields[key]
    return None


def kernel_params(argv):
    if "-append" not in argv:
        return {}
    line = argv[argv.index("-append") + 1]
    return dict(word.partition("=")[::2] for word in line.split() if word.startswith("sq."))


#: What the fake's boot 1 writes at the start of the disk (its "statefs volume").
FAKE_VOLUME = b"FAKESTATEFS1"


class Fake:
    def __init__(self, argv):
        self.argv = argv
        self.mode = os.environ.get("FAKE_QEMU_MODE", "normal")
        self.qmp = None
        self.serial = None
        self.lock = threading.Lock()
        self.running = True

    def connect(self):
        serial_path = option_value(self.argv, "-chardev", "path", ("id", "serial0"))
        qmp_path = option_value(self.argv, "-chardev", "path", ("id", "qmp0"))
        self.serial = socket.socket(socket.AF_UNIX)
        self.serial.connect(serial_path)
        self.qmp = socket.socket(socket.AF_UNIX)
        self.qmp.connect(qmp_path)

    def send_qmp(self, message):
        with self.lock:
            self.qmp.sendall((json.dumps(message) + "\r\n").encode())

    def event(self, name, data=None):
        now = time.time()
        message = {
            "timestamp": {"seconds": int(now), "microseconds": int(now % 1 * 1e6)},
            "event": name,
        }
        if data is not None:
            message["data"] = data
        self.send_qmp(message)

    def console(self, text):
        self.serial.sendall(text.encode())

    def shutdown(self, reason, code=0):
        self.event("SHUTDOWN", {"guest": reason.startswith("guest"), "reason": reason})
        time.sleep(0.01)
        os._exit(code)

    # -- guest behaviours -----------------------------------------------------------------
    def play_console(self):
        script = os.environ.get("FAKE_QEMU_CONSOLE", "")
        for line in script.splitlines():
            if line.startswith("@sleep "):
                time.sleep(float(line.split()[1]))
            else:
                self.console(line + "\r\n")

    def guest(self):
        if self.mode == "normal" or self.mode == "stubborn":
            self.play_console()
        elif self.mode == "poweroff":
            self.play_console()
            self.shutdown("guest-shutdown")
        elif self.mode == "flood":
            count = int(os.environ.get("FAKE_QEMU_LINES", "10000"))
            block = []
            for number in range(count):
                block.append(f"flood line {number:08d} " + "x" * 40 + "\r\n")
                if len(block) == 512:
                    self.console("".join(block))
                    block = []
            self.console("".join(block) + "flood done\r\n")
            self.shutdown("guest-shutdown")
        elif self.mode == "contract":
            self.contract()

    def script(self, params):
        """PID 1's sq.mode=script: exec the payload; report like guest/init/pid1.py."""
        try:
            source = base64.b64decode(params.get("sq.script", "")).decode()
            exec(compile(source, "<sq.script>", "exec"), {"__name__": "__sq_script__"})
            self.console("init: done, powering off\r\n")
        except Exception as exc:  # noqa: BLE001 - what PID 1 does with a failing payload
            self.console(f"init: fatal {type(exc).__name__}: {exc}\r\n")
            self.console(traceback.format_exc().replace("\n", "\r\n"))
        except BaseException:  # noqa: BLE001 - SystemExit: PID 1 prints nothing, powers off
            pass
        self.shutdown("guest-shutdown")

    def stop(self, line):
        self.console(line + "\r\n")
        self.shutdown("guest-shutdown")

    def contract(self):
        # A real guest takes seconds to get here; exiting within milliseconds of the QMP
        # handshake would race the harness's own start-up (a launch failure, not a verdict).
        time.sleep(0.2)
        params = kernel_params(self.argv)
        self.console("init: started (python 3.11.2)\r\n")
        if params.get("sq.mode") == "script":
            self.script(params)
            return
        nonce = params.get("sq.nonce", "")
        if not re.fullmatch(r"[0-9a-f]{8,64}", nonce):
            self.stop(
                f"init: fatal ValueError: sq.nonce must be 8-64 lowercase hex digits, got {nonce!r}"
            )
        boot = params.get("sq.boot", "1")
        disk = option_value(self.argv, "-drive", "file")
        fail = os.environ.get("FAKE_QEMU_FAIL", "")
        delay = float(os.environ.get("FAKE_QEMU_DELAY", "0.01"))
        with open(disk, "rb") as handle:
            head = handle.read(4096)
        if boot == "1":
            # A qcow2 overlay (a recorded run) is taken for the blank disk under it.
            blank = head.count(0) == len(head) or head.startswith((FAKE_VOLUME, b"QFI\xfb"))
            if not blank and params.get("sq.format") != "force":
                self.stop(
                    "statefsd: fatal EMEDIUMTYPE /dev/vda holds no statefs volume and is not "
                    "blank; not formatting it (sq.format=force formats it)"
                )
            key = hashlib.sha256(os.urandom(16)).hexdigest()
            with open(disk, "r+b") as handle:
                handle.write(FAKE_VOLUME + key.encode() + b"1" + b"\0" * 4096)
            origin = "created"
        else:
            key = head[len(FAKE_VOLUME) : len(FAKE_VOLUME) + 64].decode()
            last = head[len(FAKE_VOLUME) + 64 : len(FAKE_VOLUME) + 65].decode()
            if last != "1":
                fail = "SELFTEST: reboot persist ok"
                os.environ["FAKE_QEMU_FAIL_TEXT"] = f"FAIL last record is from boot {last}"
            with open(disk, "r+b") as handle:
                handle.seek(len(FAKE_VOLUME) + 64)
                handle.write(boot.encode())
            origin = "loaded"
        markers = [
            "blk: virtio-blk up (ss=512 nsec=131072)",
            "statefsd: ready",
            f"keystored: device key fingerprint {key} ({origin})",
            "SELFTEST: statefs put ok",
            "statefsd: denied uid=1000 op=GET key=/state/keystore/device/seed",
            "SELFTEST: statefs deny ok",
            "SELFTEST: statefs persist ok",
            "SELFTEST: bootctl persist ok",
            "SELFTEST: device key persist ok",
        ]
        if boot == "2":
            markers.append("SELFTEST: reboot persist ok")
        for marker in reversed(markers):  # not in the contract file's order
            time.sleep(delay)
            if fail and marker == fail:
                what = os.environ.get("FAKE_QEMU_FAIL_TEXT", "FAIL: injected")
                self.console(marker.replace(" ok", f" {what}") + "\r\n")
                if os.environ.get("FAKE_QEMU_HANG_AFTER_FAIL"):
                    time.sleep(3600)
                continue
            self.console(marker + "\r\n")
        time.sleep(float(os.environ.get("FAKE_QEMU_LINGER", "0")))
        self.console("init: done, powering off\r\n")
        self.shutdown("guest-shutdown")

    # -- QMP --------------------------------------------------------------------------------
    def greet(self):
        self.send_qmp(
            {
                "QMP": {
                    "version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "fake"},
                    "capabilities": [],
                }
            }
        )

    def serve_qmp(self):
        # Like QEMU, parse a stream of JSON values: qemu.qmp sends no newline after them.
        decoder = json.JSONDecoder()
        buffer = ""
        while True:
            data = self.qmp.recv(65536)
            if not data:
                return
            buffer += data.decode()
            while True:
                buffer = buffer.lstrip()
                try:
                    message, end = decoder.raw_decode(buffer)
                except ValueError:
                    break
                buffer = buffer[end:]
                self.command(message)

    def command(self, message):
        name = message.get("execute")
        reply = {"return": {}}
        if "id" in message:
            reply["id"] = message["id"]
        if name == "query-status":
            reply["return"] = {
                "status": "running" if self.running else "paused",
                "running": self.running,
                "singlestep": False,
            }
        elif name == "query-kvm":
            reply["return"] = {"enabled": False, "present": False}
        elif name == "stop":
            self.running = False
            self.event("STOP")
        elif name == "cont":
            self.running = True
            self.event("RESUME")
        elif name == "system_reset":
            self.event("RESET", {"guest": False, "reason": "host-qmp-system-reset"})
        elif name == "quit":
            self.send_qmp(reply)
            if self.mode == "stubborn":
                return
            self.shutdown("host-qmp-quit")
        elif name != "qmp_capabilities":
            reply = {"error": {"class": "CommandNotFound", "desc": f"no {name}"}}
            if "id" in message:
                reply["id"] = message["id"]
        self.send_qmp(reply)
        if name == "qmp_capabilities":
            # The guest runs once the harness is attached (real guests take seconds to boot).
            threading.Thread(target=self.guest, daemon=True).start()


def main():
    fake = Fake(sys.argv[1:])
    pid_file = os.environ.get("FAKE_QEMU_PIDFILE")
    if pid_file:
        with open(pid_file, "w") as handle:
            handle.write(str(os.getpid()))
    if fake.mode == "exit-early":
        sys.stderr.write(
            os.environ.get("FAKE_QEMU_STDERR")
            or "qemu-system-aarch64: -drive file=/nope: Could not open '/nope': "
            "No such file or directory\n"
        )
        sys.exit(1)
    if fake.mode == "lock-fail":
        fake.connect()
        time.sleep(0.05)
        sys.stderr.write(os.environ.get("FAKE_QEMU_STDERR", ""))
        sys.stderr.flush()
        os._exit(1)
    if fake.mode == "hang":
        time.sleep(3600)
    if fake.mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: fake.shutdown("host-signal"))
    fake.connect()
    fake.greet()
    fake.serve_qmp()
    time.sleep(3600 if fake.mode == "stubborn" else 0)


if __name__ == "__main__":
    main()
