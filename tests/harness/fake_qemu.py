"""A stand-in for qemu-system-*: enough QMP and serial behaviour to test the lifecycle.

It reads the same argv the harness gives real QEMU (``-chardev socket,...path=``, ``-append``,
``-drive file=``), connects to the harness's console and QMP sockets like QEMU does, and then
behaves as ``FAKE_QEMU_MODE`` says:

``normal``      print ``FAKE_QEMU_CONSOLE`` (``\\n``-separated; ``@sleep S`` lines pause), then
                idle until QMP ``quit`` or a signal.
``poweroff``    print the console, then announce SHUTDOWN (guest-shutdown) and exit 0.
``contract``    act like the guest's contract run: read ``sq.boot`` from ``-append`` and print
                its markers; boot 1 stores a fingerprint in the disk file, boot 2 reads it.
                ``FAKE_QEMU_FAIL=<marker text>`` prints that marker as a FAIL instead.
``exit-early``  complain on stderr (``FAKE_QEMU_STDERR``, default a bad -drive) and exit 1
                before connecting.
``hang``        never connect (a launch timeout).
``stubborn``    answer ``quit`` but keep running, ignore SIGTERM (forces SIGKILL).
``flood``       print ``FAKE_QEMU_LINES`` numbered lines as fast as possible, then power off.

Only the standard library: it runs under whatever python3 the wrapper script names.
"""

import hashlib
import json
import os
import signal
import socket
import sys
import threading
import time


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

    def contract(self):
        params = kernel_params(self.argv)
        boot = params.get("sq.boot", "1")
        disk = option_value(self.argv, "-drive", "file")
        fail = os.environ.get("FAKE_QEMU_FAIL", "")
        delay = float(os.environ.get("FAKE_QEMU_DELAY", "0.01"))
        self.console("init: started (python 3.11.2)\r\n")
        if boot == "1":
            key = hashlib.sha256(os.urandom(16)).hexdigest()
            with open(disk, "r+b") as handle:
                handle.write(key.encode() + params.get("sq.nonce", "").encode())
            origin = "created"
        else:
            with open(disk, "rb") as handle:
                key = handle.read(64).decode()
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
                self.console(marker.replace(" ok", " FAIL: injected") + "\r\n")
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
