"""The guest's contract flow on the host: the same services (forked by the same supervisor),
the same selftest, over a file-backed disk and sockets in a temp dir. The VM runs exactly this
code; here a failure is quick to debug."""

import pytest

from guest.init.contract import Services
from guest.init.supervisor import Supervisor
from guest.selftest.checks import Selftest, Sockets
from guest.statefs import FileBlockDevice

SEED_MARKERS = [
    "SELFTEST: statefs put ok",
    "SELFTEST: statefs persist ok",
    "SELFTEST: bootctl persist ok",
    "SELFTEST: device key persist ok",
]


def run_boot(
    disk, tmp_path, boot: int, nonce: str, capfd, before_restart=lambda: None
) -> tuple[bool, list[str]]:
    sockets = Sockets(
        statefsd=str(tmp_path / "statefsd.sock"),
        keystored=str(tmp_path / "keystored.sock"),
        updated=str(tmp_path / "updated.sock"),
    )
    supervisor = Supervisor()
    services = Services(supervisor, str(disk), sockets)
    try:
        services.start_all()

        def restart():
            before_restart()
            services.restart()

        passed = Selftest(boot=boot, nonce=nonce, restart=restart, sockets=sockets).run()
        supervisor.check()
    finally:
        supervisor.stop_all()
    return passed, capfd.readouterr().out.splitlines()


@pytest.fixture
def disk(tmp_path):
    path = tmp_path / "disk.img"
    FileBlockDevice.create(path, 16 << 20).close()
    return path


def test_two_boots_prove_every_marker(disk, tmp_path, capfd):
    passed, lines = run_boot(disk, tmp_path, 1, "00112233aabbccdd", capfd)
    assert passed, lines
    for marker in SEED_MARKERS:
        assert marker in lines
    assert "statefsd: ready" in lines
    created = [line for line in lines if line.startswith("keystored: device key fingerprint")]
    assert created[0].endswith("(created)")
    assert created[1].endswith("(loaded)")
    fingerprint = created[0].split()[4]

    passed, lines = run_boot(disk, tmp_path, 2, "00112233aabbccdd", capfd)
    assert passed, lines
    assert "SELFTEST: reboot persist ok" in lines
    for marker in SEED_MARKERS:
        assert marker in lines
    loaded = [line for line in lines if line.startswith("keystored: device key fingerprint")]
    assert all(line.split()[4] == fingerprint and line.endswith("(loaded)") for line in loaded)
    assert not any("Traceback" in line or "FAIL" in line for line in lines)


def test_reboot_with_the_wrong_nonce_fails_with_a_named_reason(disk, tmp_path, capfd):
    assert run_boot(disk, tmp_path, 1, "00112233aabbccdd", capfd)[0]
    passed, lines = run_boot(disk, tmp_path, 2, "ffffffffffffffff", capfd)
    assert not passed
    assert any(line.startswith("SELFTEST: reboot persist FAIL nonce") for line in lines)
    assert "SELFTEST: reboot persist ok" not in lines


def test_boot_two_on_a_fresh_disk_fails(disk, tmp_path, capfd):
    passed, lines = run_boot(disk, tmp_path, 2, "00112233aabbccdd", capfd)
    assert not passed
    assert any(line.startswith("SELFTEST: reboot persist FAIL no record") for line in lines)


def test_a_store_that_loses_writes_on_restart_fails_persist(disk, tmp_path, capfd, monkeypatch):
    """A mutant statefsd whose replay forgets everything: put ok, persist must FAIL."""
    from guest.statefs import store as store_module

    real_open = store_module.Store.open.__func__
    flag = tmp_path / "forget"

    def forgetful_open(cls, dev, config=None):
        if flag.exists():  # the restart: lose everything (statefsd then formats)
            flag.unlink()
            dev.write(0, bytes(dev.size_bytes))
            dev.flush()
        return real_open(cls, dev, config)

    monkeypatch.setattr(store_module.Store, "open", classmethod(forgetful_open))
    passed, lines = run_boot(disk, tmp_path, 1, "00112233aabbccdd", capfd, flag.touch)
    assert not passed
    assert "SELFTEST: statefs put ok" in lines
    assert "SELFTEST: statefs persist ok" not in lines
    assert any(line.startswith("SELFTEST: statefs persist FAIL") for line in lines)
