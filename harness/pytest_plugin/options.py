"""The ``--qemu-*`` options, their ini twins, and how the effective values are chosen.

Precedence: command line > environment (``QEMU_TIMEOUT_MULTIPLIER``, ``QEMU_ARCH``,
``QEMU_ACCEL``, ``QEMU_PROFILE``) > ini (``[tool.pytest.ini_options]``) > default. Each value is
validated once, at configure time, and an invalid one stops the session with a UsageError
naming where it came from.

``--qemu-profile NAME`` runs the session's VMs in one of the contract's lanes
(``harness/contract/contract.toml``, ``[profile.NAME]``), as ``python -m harness run --profile``
does: its vCPUs, memory and ``-icount`` go to every VM the fixtures make, its timeout
multiplier scales every deadline, and its required-marker choices are in the ``qemu_contract``
fixture. A multiplier the caller sets that contradicts the profile is an error, as on the
command line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.artifacts import RUNS_SUBDIR, default_build_dir
from harness.contract.profiles import DEFAULT_PROFILE, Settings
from harness.contract.spec import Contract
from harness.deadline import MULTIPLIER_ENV, parse_multiplier
from harness.errors import ConfigError, ContractError
from harness.vm.arch import ARCH_PROFILES
from harness.vm.config import ACCELS

GROUP = "statefs-qemu"
GROUP_DESCRIPTION = "statefs-qemu: QEMU virtual machines"
KEEP_CHOICES = ("failed", "always", "never")

HELP_ARCH = "guest architecture of the image and VMs (default: aarch64)"
HELP_ACCEL = "accelerator: auto = KVM when usable for the guest arch, else TCG (default: auto)"
HELP_MULTIPLIER = (
    "scale every VM timeout, e.g. 3 on a slow machine (default: $QEMU_TIMEOUT_MULTIPLIER or 1)"
)
HELP_KEEP = (
    "keep each VM's artifacts (uart.log, qmp.jsonl, qemu.stderr): for failed tests only, "
    "always, or never (default: failed)"
)
HELP_ARTIFACTS = (
    "where VM artifacts go (relative: to the rootdir; default: $SQ_BUILD_DIR/runs/pytest if "
    "set, else pytest's temporary directory, <basetemp>/qemu-runs0)"
)

HELP_PROFILE = (
    "run the VMs in this lane of the contract (its vCPUs, memory, -icount, timeouts and "
    "required markers; see [profile.*] in contract.toml; default: default)"
)

# option name, ini name, environment variable, help, default
_SPECS = {
    "arch": ("--qemu-arch", "qemu_arch", "QEMU_ARCH", HELP_ARCH, "aarch64"),
    "accel": ("--qemu-accel", "qemu_accel", "QEMU_ACCEL", HELP_ACCEL, "auto"),
    "multiplier": (
        "--qemu-timeout-multiplier",
        "qemu_timeout_multiplier",
        MULTIPLIER_ENV,
        HELP_MULTIPLIER,
        "1",
    ),
    "keep": ("--qemu-keep-artifacts", "qemu_keep_artifacts", None, HELP_KEEP, "failed"),
    "artifacts": ("--qemu-artifacts-dir", "qemu_artifacts_dir", None, HELP_ARTIFACTS, ""),
    "profile": ("--qemu-profile", "qemu_profile", "QEMU_PROFILE", HELP_PROFILE, DEFAULT_PROFILE),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, GROUP_DESCRIPTION)
    group.addoption(
        "--qemu-arch",
        dest="qemu_arch",
        default=None,
        metavar="ARCH",
        choices=sorted(ARCH_PROFILES),
        help=HELP_ARCH,
    )
    group.addoption(
        "--qemu-accel", dest="qemu_accel", default=None, choices=ACCELS, help=HELP_ACCEL
    )
    group.addoption(
        "--qemu-timeout-multiplier",
        dest="qemu_timeout_multiplier",
        default=None,
        metavar="FACTOR",
        help=HELP_MULTIPLIER,
    )
    group.addoption(
        "--qemu-keep-artifacts",
        dest="qemu_keep_artifacts",
        default=None,
        choices=KEEP_CHOICES,
        help=HELP_KEEP,
    )
    group.addoption(
        "--qemu-artifacts-dir",
        dest="qemu_artifacts_dir",
        default=None,
        metavar="DIR",
        help=HELP_ARTIFACTS,
    )
    group.addoption(
        "--qemu-profile", dest="qemu_profile", default=None, metavar="NAME", help=HELP_PROFILE
    )
    for _, ini, _, help_text, default in _SPECS.values():
        parser.addini(ini, help_text, type="string", default=default)


@dataclass(frozen=True)
class QemuSettings:
    """The effective ``--qemu-*`` settings of a session, with where each came from."""

    arch: str
    accel: str
    multiplier: float
    keep: str
    artifacts_dir: Path | None  # None: pytest's tmp_path_factory
    sources: dict[str, str] = field(default_factory=dict)
    profile: str = DEFAULT_PROFILE
    #: The profile's QEMU settings (its multiplier is already in ``multiplier``).
    lane: Settings = field(default_factory=Settings)

    def machine_overrides(self) -> dict[str, object]:
        """MachineConfig fields the profile sets (the others keep the image's defaults)."""
        values: dict[str, object] = {
            "smp": self.lane.smp,
            "memory_mib": self.lane.memory_mib,
            "icount": self.lane.icount,
        }
        return {key: value for key, value in values.items() if value is not None}

    @property
    def timeout_scale(self) -> float:
        """The multiplier times the architecture's TCG slowdown (harness.vm.arch)."""
        return self.multiplier * ARCH_PROFILES[self.arch].timeout_scale

    def scale(self, seconds: float) -> float:
        """A timeout scaled by the multiplier and the architecture."""
        return seconds * self.timeout_scale

    def describe(self) -> str:
        def show(name: str, value: object) -> str:
            return f"{name}={value} ({self.sources.get(name, 'default')})"

        return ", ".join(
            [
                show("arch", self.arch),
                show("accel", self.accel),
                show("timeout multiplier", f"{self.multiplier:g}"),
                show("keep artifacts", self.keep),
                show("profile", self.profile),
                f"artifacts={self.artifacts_dir or 'pytest basetemp/qemu-runs0'}",
            ]
        )


def _pick(config: pytest.Config, key: str) -> tuple[str, str]:
    option, ini, env, _, default = _SPECS[key]
    value = config.getoption(option.lstrip("-").replace("-", "_"))
    if value is not None:
        return str(value), option
    if env is not None and os.environ.get(env):
        return os.environ[env], f"${env}"
    ini_value = config.getini(ini)
    if ini_value not in ("", None) and ini_value != default:
        return str(ini_value), f"ini {ini}"
    return str(ini_value or default), "default"


def resolve(config: pytest.Config) -> QemuSettings:
    """Validate and combine the options; raises UsageError naming the bad value's source."""
    sources: dict[str, str] = {}
    values: dict[str, str] = {}
    for key, name in (
        ("arch", "arch"),
        ("accel", "accel"),
        ("multiplier", "timeout multiplier"),
        ("keep", "keep artifacts"),
        ("artifacts", "artifacts"),
        ("profile", "profile"),
    ):
        values[key], sources[name] = _pick(config, key)
    if values["arch"] not in ARCH_PROFILES:
        raise pytest.UsageError(
            f"{sources['arch']}: unknown arch {values['arch']!r} "
            f"(known: {', '.join(sorted(ARCH_PROFILES))})"
        )
    if values["accel"] not in ACCELS:
        raise pytest.UsageError(
            f"{sources['accel']}: accel must be one of {ACCELS}, got {values['accel']!r}"
        )
    try:
        multiplier = parse_multiplier(values["multiplier"])
    except ConfigError as exc:
        raise pytest.UsageError(f"{sources['timeout multiplier']}: {exc}") from None
    if values["keep"] not in KEEP_CHOICES:
        raise pytest.UsageError(
            f"{sources['keep artifacts']}: keep artifacts must be one of "
            f"{KEEP_CHOICES}, got {values['keep']!r}"
        )
    artifacts: Path | None = None
    if sources["artifacts"] == "--qemu-artifacts-dir" or (
        values["artifacts"] and not os.environ.get("SQ_BUILD_DIR")
    ):
        artifacts = Path(values["artifacts"])
        if not artifacts.is_absolute():
            artifacts = config.rootpath / artifacts
    elif os.environ.get("SQ_BUILD_DIR"):
        artifacts = default_build_dir() / RUNS_SUBDIR / "pytest"
        sources["artifacts"] = "$SQ_BUILD_DIR"
    profile, lane = _lane(values["profile"], sources, multiplier, values["accel"])
    if lane.timeout_multiplier is not None:
        multiplier = lane.timeout_multiplier
    return QemuSettings(
        values["arch"],
        values["accel"],
        multiplier,
        values["keep"],
        artifacts,
        sources,
        profile=profile,
        lane=lane,
    )


def _lane(
    name: str, sources: dict[str, str], multiplier: float, accel: str
) -> tuple[str, Settings]:
    """The profile ``name`` of the project's contract, checked against the caller's multiplier.

    Nobody asked for a lane: the contract is not read (every pytest session loads this plugin,
    most boot nothing), and the VMs keep the image's defaults, which the default lane names."""
    where = sources["profile"]
    if where == "default":
        return name, Settings()
    try:
        profile = Contract.load().profile(name)
    except ContractError as exc:
        raise pytest.UsageError(f"{where}: {exc}") from None
    caller = Settings(
        timeout_multiplier=None if sources["timeout multiplier"] == "default" else multiplier
    )
    try:
        lane = profile.resolve(caller, accel=accel)
    except ConfigError as exc:
        raise pytest.UsageError(f"{where}: {exc}") from None
    if lane.record:
        raise pytest.UsageError(
            f"{where}: profile {name!r} records every boot, which the fixtures do not do; run "
            f"`python -m harness run --profile {name}` (then `python -m harness replay RUN`)"
        )
    return name, lane
