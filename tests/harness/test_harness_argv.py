"""The QEMU command line: built from a config without running anything."""

from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.vm.accel import AccelChoice
from harness.vm.config import DiskSpec, MachineConfig
from harness.vm.kernel_args import render, script_args
from harness.vm.qemu_args import Endpoints, build_argv, kernel_command_line

TCG = AccelChoice("tcg", "test")
KVM = AccelChoice("kvm", "test")
ENDPOINTS = Endpoints(Path("/tmp/sq-x/serial.sock"), Path("/tmp/sq-x/qmp.sock"))


def pairs(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == flag]


def config(**overrides) -> MachineConfig:
    base = dict(
        kernel=Path("/img/vmlinuz"),
        initramfs=Path("/img/initramfs.cpio"),
        kernel_args=("console=ttyAMA0", "quiet", "panic=-1", "cryptomgr.notests"),
        disks=(DiskSpec("/tmp/disk.img", cache="none"),),
        devices=("virtio-rng-device",),
    )
    base.update(overrides)
    return MachineConfig(**base)


def test_aarch64_tcg_command_line_matches_the_measured_setup():
    argv = build_argv(
        config(), ENDPOINTS, TCG, qemu_path="/usr/bin/qemu-system-aarch64", name="boot1"
    )
    assert argv[0] == "/usr/bin/qemu-system-aarch64"
    assert pairs(argv, "-machine") == ["virt"]
    assert pairs(argv, "-accel") == ["tcg"]
    assert pairs(argv, "-cpu") == ["cortex-a57"]
    assert pairs(argv, "-m") == ["512"]
    assert pairs(argv, "-smp") == ["1"]
    assert pairs(argv, "-name") == ["boot1"]
    assert "-no-reboot" in argv
    assert "-nodefaults" in argv
    assert "-S" not in argv
    assert pairs(argv, "-kernel") == ["/img/vmlinuz"]
    assert pairs(argv, "-initrd") == ["/img/initramfs.cpio"]
    assert pairs(argv, "-append") == ["console=ttyAMA0 quiet panic=-1 cryptomgr.notests"]
    assert pairs(argv, "-drive") == ["if=none,id=d0,file=/tmp/disk.img,format=raw,cache=none"]
    assert pairs(argv, "-device") == ["virtio-blk-device,drive=d0", "virtio-rng-device"]
    assert pairs(argv, "-chardev") == [
        "socket,id=serial0,path=/tmp/sq-x/serial.sock",
        "socket,id=qmp0,path=/tmp/sq-x/qmp.sock",
    ]
    assert pairs(argv, "-serial") == ["chardev:serial0"]
    assert pairs(argv, "-mon") == ["chardev=qmp0,mode=control"]


def test_kvm_uses_the_host_cpu():
    argv = build_argv(config(cpu="cortex-a72"), ENDPOINTS, KVM)
    assert pairs(argv, "-accel") == ["kvm"]
    assert pairs(argv, "-cpu") == ["host"]


def test_disk_options_commas_and_nbd():
    disks = (
        DiskSpec(
            "/tmp/a,b.img",
            cache="writeback",
            driver_options={"aio": "threads"},
            device_options={"serial": "state0"},
        ),
        DiskSpec.nbd_unix("/tmp/sq-y/nbd.sock", cache="unsafe", format="raw", id="state"),
        DiskSpec("/tmp/ro.qcow2", format="qcow2", read_only=True),
    )
    argv = build_argv(config(disks=disks), ENDPOINTS, TCG)
    assert pairs(argv, "-drive") == [
        "if=none,id=d0,file=/tmp/a,,b.img,format=raw,cache=writeback,aio=threads",
        "if=none,id=state,file=nbd+unix:///?socket=/tmp/sq-y/nbd.sock,format=raw,cache=unsafe",
        "if=none,id=d2,file=/tmp/ro.qcow2,format=qcow2,cache=writeback,readonly=on",
    ]
    assert pairs(argv, "-device")[:3] == [
        "virtio-blk-device,drive=d0,serial=state0",
        "virtio-blk-device,drive=state",
        "virtio-blk-device,drive=d2",
    ]


def test_pci_virtio_and_extra_args_and_paused_start():
    cfg = config(
        virtio_suffix="pci",
        extra_args=("-icount", "shift=0"),
        start_paused=True,
        devices=(),
        debug_qmp_socket=Path("/tmp/dbg.sock"),
    )
    argv = build_argv(cfg, ENDPOINTS, TCG)
    assert pairs(argv, "-device") == ["virtio-blk-pci,drive=d0"]
    assert argv[-2:] == ["-icount", "shift=0"]
    assert "-S" in argv
    assert pairs(argv, "-qmp") == ["unix:/tmp/dbg.sock,server=on,wait=off"]


def test_duplicate_drive_ids_are_rejected():
    cfg = config(disks=(DiskSpec("/a", id="x"), DiskSpec("/b", id="x")))
    with pytest.raises(ConfigError, match="duplicate drive ids: x"):
        build_argv(cfg, ENDPOINTS, TCG)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("arch", "mips", "supported are"),
        ("accel", "hvf", "accel"),
        ("memory_mib", 1, "memory_mib"),
        ("smp", 0, "smp"),
        ("kernel_args", ("a b",), "whitespace"),
    ],
)
def test_config_validation_names_the_field(field, value, message):
    with pytest.raises(ConfigError, match=message):
        config(**{field: value})


def test_disk_validation():
    with pytest.raises(ConfigError, match="cache"):
        DiskSpec("/a", cache="fast")
    with pytest.raises(ConfigError, match="format"):
        DiskSpec("/a", format="vmdk")
    with pytest.raises(ConfigError, match="option name"):
        DiskSpec("/a", driver_options={"bad key": "x"})


def test_kernel_command_line_limit_is_enforced():
    huge = config(kernel_args=("console=ttyAMA0", "x=" + "a" * 2100))
    with pytest.raises(ConfigError, match=r"kernel command line is 2118 bytes.*2047"):
        kernel_command_line(huge)


def test_script_args_encode_and_bound_the_script():
    mode, script = script_args("print('hi')\n")
    assert mode == "sq.mode=script"
    assert script == "sq.script=cHJpbnQoJ2hpJykK"
    with pytest.raises(ConfigError, match="shorten the script"):
        script_args("x = 1\n" * 400)


def test_render_fills_placeholders_and_rejects_unknown_ones():
    assert render(
        ["sq.boot={boot}", "sq.nonce={nonce}", "plain"], {"boot": 2, "nonce": "00ff"}
    ) == ("sq.boot=2", "sq.nonce=00ff", "plain")
    with pytest.raises(ConfigError, match=r"\{nocne\}"):
        render(["sq.nonce={nocne}"], {"nonce": "x"})


class _Image:
    def __init__(self, arch: str = "aarch64") -> None:
        self.arch = arch
        self.kernel = Path("/img/vmlinuz")
        self.initramfs = Path("/img/initramfs.cpio")
        self.manifest = Path("/img/manifest")


def test_config_from_image_profile_adds_console_and_rng():
    cfg = MachineConfig.from_image(_Image(), kernel_args=("sq.mode=shell",))  # type: ignore[arg-type]
    assert cfg.kernel_args == (
        "console=ttyAMA0",
        "quiet",
        "panic=-1",
        "cryptomgr.notests",
        "sq.mode=shell",
    )
    assert cfg.devices == ("virtio-rng-device",)
    assert cfg.with_kernel_args("sq.boot=1").kernel_args[-1] == "sq.boot=1"


def test_riscv64_command_line_uses_opensbi_and_the_16550_console():
    image = _Image("riscv64")
    cfg = MachineConfig.from_image(image, disks=(DiskSpec("/tmp/disk.img"),))  # type: ignore[arg-type]
    argv = build_argv(cfg, ENDPOINTS, TCG)
    assert argv[0] == "qemu-system-riscv64"
    assert pairs(argv, "-machine") == ["virt"]
    assert pairs(argv, "-bios") == ["default"]
    assert pairs(argv, "-cpu") == ["rv64"]
    assert pairs(argv, "-append") == ["console=ttyS0 quiet panic=-1 cryptomgr.notests"]
    assert pairs(argv, "-device") == ["virtio-blk-device,drive=d0", "virtio-rng-device"]


def test_aarch64_needs_no_firmware_argument():
    assert "-bios" not in build_argv(config(), ENDPOINTS, TCG)


def test_riscv64_kernel_keeps_only_1023_bytes_of_command_line():
    ok = config(arch="riscv64", kernel_args=("x=" + "a" * 1000,))
    assert kernel_command_line(ok).startswith("x=")
    with pytest.raises(ConfigError, match=r"riscv64 kernel keeps only 1023"):
        kernel_command_line(config(arch="riscv64", kernel_args=("x=" + "a" * 1030,)))
    with pytest.raises(ConfigError, match=r"leaves 575 for it"):
        script_args("print(1)\n" * 60, arch="riscv64")


def test_a_silent_exit_is_a_power_off_only_where_the_profile_says_so():
    from harness.vm.state import ExitInfo

    assert ExitInfo(0, "exited", 1.0, None, silent_poweroff=True).guest_powered_off
    assert not ExitInfo(0, "exited", 1.0, None).guest_powered_off
    assert not ExitInfo(1, "exited", 1.0, None, silent_poweroff=True).guest_powered_off
    assert not ExitInfo(0, "exited", 1.0, "guest-reset", silent_poweroff=True).guest_powered_off
    assert ExitInfo(0, "exited", 1.0, "guest-shutdown").guest_powered_off
