"""The private apt workspace, with apt replaced by a recording fake."""

import subprocess
from pathlib import Path

import pytest

from harness.image import fetch
from harness.image.apt_sources import ArchiveSource
from harness.image.errors import (
    ChecksumError,
    FetchError,
    NetworkError,
    NotServed,
    PackageNotFound,
    PinUnavailable,
)
from harness.image.lock import Pin, first_dependency

SHOW = """\
Package: linux-image-arm64
Version: 6.1.192-2
Architecture: arm64
Depends: linux-image-6.1.0-56-arm64 (= 6.1.192-2)
Filename: pool/main/l/linux-signed-arm64/linux-image-arm64_6.1.192-2_arm64.deb
Size: 1448
SHA256: 7d009bcc5a248b746ce4e686f30cb3e4fbfdadeb00af4309926ab4523ff4906c
Description: Linux for 64-bit ARMv8 machines (meta-package)
 a continuation line

Package: zlib1g
Version: 1:1.2.13.dfsg-1
Architecture: arm64
Filename: pool/main/z/zlib/zlib1g_1.2.13.dfsg-1_arm64.deb
Size: 82744
SHA256: {zsha}
"""


def _key(argv: list[str]) -> str:
    """ "apt-config dump", "apt-cache show", or apt-get's subcommand ("update", "download")."""
    if argv[0] in ("apt-config", "apt-cache"):
        return f"{argv[0]} {argv[1] if argv[0] == 'apt-config' else 'show'}"
    return next(arg for arg in argv[1:] if not arg.startswith("-"))


class FakeApt:
    """Answers apt commands from canned output; records every call."""

    def __init__(self, answers: dict[str, tuple[int, str]], payload: bytes = b"deb") -> None:
        self.answers = answers
        self.payload = payload
        self.calls: list[tuple[list[str], dict[str, str] | None]] = []

    def __call__(self, argv, env=None, cwd=None, **_kwargs) -> subprocess.CompletedProcess[str]:
        self.calls.append((list(argv), env))
        code, out = self.answers.get(_key(argv), (0, ""))
        if argv[:3] == ["apt-get", "-q", "download"] and code == 0 and cwd is not None:
            for spec in argv[3:]:
                name, _, version = spec.partition("=")
                Path(cwd, f"{name}_{version.replace(':', '%3a')}_arm64.deb").write_bytes(
                    self.payload
                )
        return subprocess.CompletedProcess(argv, code, out, "")


def _workspace(tmp_path: Path, fake: FakeApt) -> fetch.AptWorkspace:
    source = ArchiveSource("http://m.example/debian", "bookworm", ("main",), "/k.gpg")
    ws = fetch.AptWorkspace(tmp_path / "apt", "arm64", [source], arch="aarch64", runner=fake)
    ws.prepare()
    return ws


def test_private_config_points_everything_into_the_workspace(tmp_path: Path) -> None:
    fake = FakeApt(
        {
            "apt-config dump": (
                0,
                'Acquire::http::Proxy "http://proxy:3128";\n'
                'Acquire::Languages "fr";\nDir::Etc "etc/apt";\n',
            )
        }
    )
    ws = _workspace(tmp_path, fake)
    config = ws.config.read_text()
    root = str(tmp_path / "apt")
    for key in (
        "Dir::State::lists",
        "Dir::State::status",
        "Dir::Cache::archives",
        "Dir::Etc::sourcelist",
        "Dir::Etc::sourceparts",
        "Dir::Etc::parts",
    ):
        line = next(line for line in config.splitlines() if line.startswith(key + " "))
        assert root in line, line
    assert 'APT::Architecture "arm64";' in config
    assert 'Acquire::http::Proxy "http://proxy:3128";' in config  # inherited from the host
    assert 'Acquire::Languages "fr"' not in config  # ours wins
    assert (tmp_path / "apt" / "status").read_text() == ""
    assert "deb [arch=arm64 signed-by=/k.gpg]" in (tmp_path / "apt" / "sources.list").read_text()


def test_update_and_show_run_with_the_private_config(tmp_path: Path) -> None:
    zsha = "b" * 64
    fake = FakeApt({"apt-cache show": (0, SHOW.format(zsha=zsha))})
    ws = _workspace(tmp_path, fake)
    ws.update()
    records = ws.resolve(["linux-image-arm64", "zlib1g"])
    assert first_dependency(records["linux-image-arm64"].depends) == "linux-image-6.1.0-56-arm64"
    assert records["zlib1g"].sha256 == zsha
    assert records["zlib1g"].pin().deb_name == "zlib1g_1%3a1.2.13.dfsg-1_arm64.deb"
    for argv, env in fake.calls[1:]:
        assert env is not None, argv
        assert env["APT_CONFIG"] == str(ws.config), argv


def test_resolve_names_missing_packages(tmp_path: Path) -> None:
    fake = FakeApt({"apt-cache show": (0, SHOW.format(zsha="b" * 64))})
    ws = _workspace(tmp_path, fake)
    with pytest.raises(PackageNotFound, match="nosuch"):
        ws.resolve(["zlib1g", "nosuch"])


def _pin(sha: str) -> Pin:
    return Pin("zlib1g", "1:1.2.13.dfsg-1", "arm64", "pool/z.deb", 3, sha)


def test_download_verifies_sha256_and_caches(tmp_path: Path) -> None:
    import hashlib

    sha = hashlib.sha256(b"deb").hexdigest()
    fake = FakeApt({"apt-cache show": (0, SHOW.format(zsha=sha))})
    ws = _workspace(tmp_path, fake)
    (path,) = ws.download([_pin(sha)])
    assert path.read_bytes() == b"deb"
    calls = len(fake.calls)
    ws.download([_pin(sha)])
    assert len(fake.calls) == calls  # cached: apt not asked again


def test_download_rejects_a_checksum_mismatch(tmp_path: Path) -> None:
    fake = FakeApt({"apt-cache show": (0, SHOW.format(zsha="c" * 64))})
    ws = _workspace(tmp_path, fake)
    with pytest.raises(ChecksumError):
        ws.download([_pin("c" * 64)])
    assert not list((tmp_path / "apt" / "archives").glob("*.deb"))


def test_pinned_version_gone_from_the_archive(tmp_path: Path) -> None:
    fake = FakeApt({"apt-cache show": (0, "")})
    ws = _workspace(tmp_path, fake)
    with pytest.raises(PinUnavailable, match="--refresh-pins"):
        ws.download([_pin("d" * 64)])


@pytest.mark.parametrize(
    ("output", "kind"),
    [
        ("Err:1 http://m bookworm InRelease\n  Temporary failure resolving 'm'", NetworkError),
        ("E: Failed to fetch http://m/x  Could not connect to m:80", NetworkError),
        ("E: Unable to locate package nosuch", PackageNotFound),
        ("E: Version '9.9' for 'busybox-static' was not found", PinUnavailable),
        ("E: Write error - write (28: No space left on device)", FetchError),
        ("E: something else", FetchError),
        (
            "Err:2 http://m trixy Release\n  404  Not Found\n"
            "E: The repository 'http://m trixy Release' does not have a Release file.",
            NotServed,
        ),
    ],
)
def test_failures_are_classified(output: str, kind: type) -> None:
    error = fetch.classify_failure("apt-get update", ["apt-get", "update"], 100, output, "aarch64")
    assert type(error) is kind
    assert "apt-get update (exit 100)" in str(error)
    assert output.splitlines()[-1].strip() in str(error)


def test_failed_update_raises_with_evidence(tmp_path: Path) -> None:
    fake = FakeApt(
        {"update": (100, "Err:1 http://m bookworm InRelease\n  Could not resolve 'm'\n")}
    )
    ws = _workspace(tmp_path, fake)
    with pytest.raises(NetworkError, match="unreachable") as info:
        ws.update()
    assert info.value.returncode == 100


RELEASE = """\
-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA256

Origin: Debian
Suite: oldstable
Codename: bookworm
Architectures: all amd64 arm64 armel armhf i386 mips64el mipsel ppc64el s390x
Components: main contrib

-----BEGIN PGP SIGNATURE-----
xyz
-----END PGP SIGNATURE-----
"""


def test_a_suite_without_the_architecture_is_named(tmp_path: Path) -> None:
    """apt exits 0 and fetches no index for an architecture the suite lacks (bookworm has no
    riscv64); the Release file's Architectures field turns that into a clear error."""
    source = ArchiveSource("http://m.example/debian", "bookworm", ("main",), "/k.gpg")
    fake = FakeApt({})
    ws = fetch.AptWorkspace(tmp_path / "apt", "riscv64", [source], arch="riscv64", runner=fake)
    ws.prepare()
    (tmp_path / "apt" / "lists" / "m.example_debian_dists_bookworm_InRelease").write_text(RELEASE)
    with pytest.raises(NotServed, match=r"does not serve architecture riscv64 in suite bookworm"):
        ws.update()
    ws.architecture = "arm64"
    ws.update()  # the same suite serves arm64
