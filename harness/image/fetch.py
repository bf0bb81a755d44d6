"""Fetch the pinned .deb files with apt, without touching the host's dpkg configuration.

apt runs with a private ``APT_CONFIG`` under the cache directory: its own sources list (the
Debian archive entries of the host's sources, see :mod:`apt_sources`), lists, archives and an
empty dpkg status file, and ``APT::Architecture`` set to the guest's. Of the host's apt
configuration only the ``Acquire::`` settings are carried over (proxies, ``Check-Valid-Until``
and the like: whatever this host needs to reach its archive).

Every .deb is checked against the sha256 apt's index gives for it and against the pin; the
cache keeps verified files only, so a cached file is trusted by name.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.image.apt_sources import ArchiveSource, deb822_stanzas
from harness.image.errors import (
    ChecksumError,
    DiskFull,
    FetchError,
    NetworkError,
    NotServed,
    PackageNotFound,
    PinUnavailable,
    ToolMissing,
    is_disk_full,
)
from harness.image.lock import Pin, refresh_command

log = logging.getLogger(__name__)

Runner = Callable[..., subprocess.CompletedProcess[str]]

_NETWORK_SIGNS = (
    "Could not resolve",
    "Temporary failure resolving",
    "Could not connect",
    "Connection failed",
    "Connection timed out",
    "Network is unreachable",
    "No route to host",
    "Failed to fetch",
    "Unable to connect",
)
_NO_RELEASE = re.compile(r"repository '(\S+) (\S+) Release' does not have a Release file")
_INHERITED_SKIP = ("Acquire::IndexTargets", "Acquire::Languages", "Acquire::CompressionTypes")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def classify_failure(
    action: str, argv: Sequence[str], returncode: int, output: str, arch: str = ""
) -> FetchError:
    """Turn a failed apt run into the most specific error, with apt's words attached."""
    if "No space left on device" in output:
        return FetchError(
            f"{action}: the disk is full (free space where the cache lives, or set "
            "STATEFS_QEMU_CACHE)",
            argv=argv,
            returncode=returncode,
            output=output,
        )
    missing = sorted({f"{uri} {suite}" for uri, suite in _NO_RELEASE.findall(output)})
    if missing:
        return NotServed(
            f"{action}: the Debian archive has no suite {'; '.join(missing)} (no Release file): "
            f"fix [apt].suites in images/{arch or '<arch>'}.toml, or point the host's apt "
            "sources at an archive that serves it",
            argv=argv,
            returncode=returncode,
            output=output,
        )
    if "Unable to locate package" in output or "No packages found" in output:
        return PackageNotFound(
            f"{action}: a package is not in the Debian archive for this architecture; check "
            "the recipe's package names",
            argv=argv,
            returncode=returncode,
            output=output,
        )
    if "was not found" in output and "Version" in output:
        return PinUnavailable(
            f"{action}: the archive no longer serves a pinned version; move the pins to "
            f"what the archive has now with: {refresh_command(arch or '<arch>')}",
            argv=argv,
            returncode=returncode,
            output=output,
        )
    if any(sign in output for sign in _NETWORK_SIGNS):
        return NetworkError(
            f"{action}: the Debian archive named in the host's apt sources is unreachable "
            "(check the network, a proxy in /etc/apt/apt.conf.d, or the sources in "
            "/etc/apt/sources.list.d)",
            argv=argv,
            returncode=returncode,
            output=output,
        )
    return FetchError(f"{action} failed", argv=argv, returncode=returncode, output=output)


@dataclass(frozen=True)
class IndexRecord:
    """A package as apt's index (``apt-cache show``) describes it."""

    name: str
    version: str
    architecture: str
    filename: str
    size: int
    sha256: str
    depends: str

    def pin(self) -> Pin:
        return Pin(
            self.name, self.version, self.architecture, self.filename, self.size, self.sha256
        )


def parse_show(output: str) -> list[IndexRecord]:
    records = []
    for _, fields in deb822_stanzas(output):
        if "Package" not in fields or "SHA256" not in fields:
            continue
        records.append(
            IndexRecord(
                name=fields["Package"],
                version=fields["Version"],
                architecture=fields.get("Architecture", ""),
                filename=fields.get("Filename", ""),
                size=int(fields.get("Size", "0")),
                sha256=fields["SHA256"],
                depends=fields.get("Depends", ""),
            )
        )
    return records


def host_acquire_settings(runner: Runner = subprocess.run) -> list[str]:
    """The host's ``Acquire::`` apt settings (proxy, validity checks) as config lines."""
    if shutil.which("apt-config") is None:
        return []
    result = runner(["apt-config", "dump"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        log.debug("apt-config dump failed: %s", result.stderr.strip())
        return []
    return [
        line
        for line in result.stdout.splitlines()
        if line.startswith("Acquire::") and not line.startswith(_INHERITED_SKIP)
    ]


def _signed_body(path: Path) -> str:
    """A Release file's text, without an ``InRelease`` file's OpenPGP armour."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if text.startswith("-----BEGIN PGP SIGNED MESSAGE-----"):
        text = text.split("\n\n", 1)[-1].split("-----BEGIN PGP SIGNATURE-----", 1)[0]
    return text


class AptWorkspace:
    """A private apt root under ``root`` for one Debian architecture."""

    def __init__(
        self,
        root: Path,
        architecture: str,
        sources: Sequence[ArchiveSource],
        *,
        arch: str = "",
        runner: Runner = subprocess.run,
    ) -> None:
        self.root = root
        self.architecture = architecture
        self.sources = tuple(sources)
        self.arch = arch
        self._run = runner
        self.config = root / "apt.conf"
        self.archives = root / "archives"

    def prepare(self) -> None:
        """Write the private configuration (cheap; rewritten on every use)."""
        for tool, package in (("apt-get", "apt"), ("apt-cache", "apt")):
            if shutil.which(tool) is None:
                raise ToolMissing(tool, package)
        root = self.root
        try:
            for sub in ("lists/partial", "archives/partial", "cache", "state", "empty.d", "log"):
                (root / sub).mkdir(parents=True, exist_ok=True)
            (root / "status").touch()
            sources = "".join(s.one_line(self.architecture) + "\n" for s in self.sources)
            (root / "sources.list").write_text(sources)
            settings = {
                "Dir::State": root / "state",
                "Dir::State::lists": root / "lists",
                "Dir::State::status": root / "status",
                "Dir::Cache": root / "cache",
                "Dir::Cache::archives": self.archives,
                "Dir::Cache::pkgcache": "",
                "Dir::Cache::srcpkgcache": "",
                "Dir::Etc::sourcelist": root / "sources.list",
                "Dir::Etc::sourceparts": root / "empty.d",
                "Dir::Etc::parts": root / "empty.d",
                "Dir::Etc::main": root / "empty.d" / "none",
                "Dir::Etc::preferences": root / "empty.d" / "none",
                "Dir::Etc::preferencesparts": root / "empty.d",
                "Dir::Log": root / "log",
                "APT::Architecture": self.architecture,
                "Acquire::Languages": "none",
            }
            lines = [f'{key} "{value}";' for key, value in settings.items()]
            lines.append(f'APT::Architectures {{ "{self.architecture}"; }};')
            if os.geteuid() == 0:
                # apt would drop to _apt, who cannot write to root's cache; say so explicitly
                # instead of letting apt warn about it on every download.
                lines.append('APT::Sandbox::User "root";')
            lines += host_acquire_settings(self._run)
            self.config.write_text("\n".join(lines) + "\n")
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFull(root, exc) from exc
            raise

    def _apt(self, action: str, argv: list[str], cwd: Path | None = None) -> str:
        env = {**os.environ, "APT_CONFIG": str(self.config), "LC_ALL": "C"}
        log.debug("running %s (APT_CONFIG=%s)", " ".join(argv), self.config)
        try:
            result = self._run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
        except FileNotFoundError as exc:
            raise ToolMissing(argv[0], "apt") from exc
        output = (result.stdout or "") + (result.stderr or "")
        failed = result.returncode != 0 or any(
            line.startswith(("E:", "Err:")) for line in output.splitlines()
        )
        if failed:
            raise classify_failure(action, argv, result.returncode, output, self.arch)
        return output

    def update(self) -> None:
        """Refresh the private package lists (only the recipe's suites, one architecture).

        apt exits 0 when a suite does not carry the architecture (it skips the index
        quietly); that would surface later as "no package named ...", so each fetched
        Release file's ``Architectures`` field is checked here."""
        argv = ["apt-get", "-q", "update"]
        output = self._apt("apt-get update", argv)
        unserved = self.suites_without_architecture()
        if unserved:
            raise NotServed(
                f"the Debian archive does not serve architecture {self.architecture} in "
                f"suite {', '.join(unserved)}: name suites that carry it in [apt].suites of "
                f"images/{self.arch or '<arch>'}.toml (riscv64 is an official Debian "
                "architecture from Debian 13, trixie, on)",
                argv=argv,
                returncode=0,
                output=output,
            )

    def suites_without_architecture(self) -> list[str]:
        """The suites whose fetched Release file does not list this architecture."""
        missing = set()
        for path in sorted((self.root / "lists").glob("*Release")):
            fields = next(iter(deb822_stanzas(_signed_body(path))), (0, {}))[1]
            architectures = fields.get("Architectures", "").split()
            if architectures and self.architecture not in architectures:
                missing.add(fields.get("Codename") or fields.get("Suite") or path.name)
        return sorted(missing)

    def show(self, specs: Iterable[str]) -> list[IndexRecord]:
        """Index records of ``name`` (candidate) or ``name=version`` specs."""
        specs = list(specs)
        output = self._apt("apt-cache show", ["apt-cache", "show", "--no-all-versions", *specs])
        return parse_show(output)

    def resolve(self, names: Sequence[str]) -> dict[str, IndexRecord]:
        """The candidate version of each package; PackageNotFound names the missing ones."""
        records = {record.name: record for record in self.show(names)}
        missing = [name for name in names if name not in records]
        if missing:
            raise PackageNotFound(
                f"the Debian archive has no {self.architecture} package named "
                f"{', '.join(missing)} in the recipe's suites; check the recipe"
            )
        return records

    def download(self, pins: Sequence[Pin]) -> list[Path]:
        """Fetch ``pins`` into the archive cache, verified; cached files are not refetched."""
        wanted = [pin for pin in pins if not (self.archives / pin.deb_name).is_file()]
        if wanted:
            self._download(wanted)
        return [self.archives / pin.deb_name for pin in pins]

    def _download(self, pins: Sequence[Pin]) -> None:
        specs = [f"{pin.name}={pin.version}" for pin in pins]
        index = {(r.name, r.version): r for r in self.show(specs)}
        gone = [f"{p.name} {p.version}" for p in pins if (p.name, p.version) not in index]
        if gone:
            raise PinUnavailable(
                f"the Debian archive no longer serves {', '.join(gone)} (pinned in "
                f"images/{self.arch}.lock); move the pins to what it has now with: "
                f"{refresh_command(self.arch)}"
            )
        partial = self.archives / "partial" / f"dl-{os.getpid()}"
        try:
            partial.mkdir(parents=True, exist_ok=True)
            self._apt("apt-get download", ["apt-get", "-q", "download", *specs], cwd=partial)
            for pin in pins:
                got = partial / pin.deb_name
                if not got.is_file():
                    raise FetchError(f"apt-get download did not produce {pin.deb_name}")
                digest = sha256_file(got)
                indexed = index[(pin.name, pin.version)].sha256
                if digest != indexed or digest != pin.sha256:
                    raise ChecksumError(
                        f"{pin.deb_name}: sha256 {digest} does not match apt's index "
                        f"({indexed}) or the pin ({pin.sha256}); if the archive really "
                        f"changed, refresh the pins with: {refresh_command(self.arch)}"
                    )
                got.replace(self.archives / pin.deb_name)
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFull(self.archives, exc) from exc
            raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
