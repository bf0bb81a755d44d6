"""statefsd never formats over a disk that holds something else, unless told to.

A disk that is neither blank nor a statefs store (here: an MBR partition table) ends statefsd
with exactly one console line, ``statefsd: fatal EMEDIUMTYPE ...``, naming what was found, and
the disk keeps every byte; ``sq.format=force`` (``force_format``) formats it.
"""

import errno

import pytest

from guest.init.contract import ContractParams
from guest.statefs import FileBlockDevice, StatefsError, Store
from guest.statefsd.server import StatefsServer, run_daemon

NONCE = "0123456789abcdef"


def mbr_disk(tmp_path):
    disk = tmp_path / "disk.img"
    FileBlockDevice.create(disk, 4 << 20).close()
    with open(disk, "r+b") as handle:
        handle.seek(446)
        handle.write(bytes([0x80, 0, 2, 0, 0x83]) + bytes(11))
        handle.seek(510)
        handle.write(b"\x55\xaa")
    return disk


def test_statefsd_refuses_a_disk_holding_other_data(tmp_path, capfd):
    disk = mbr_disk(tmp_path)
    before = disk.read_bytes()
    code = run_daemon(str(disk), str(tmp_path / "s.sock"))
    lines = capfd.readouterr().out.splitlines()
    assert code == 1
    assert len(lines) == 1, lines
    assert lines[0].startswith("statefsd: fatal EMEDIUMTYPE "), lines
    assert "an MBR partition table" in lines[0]
    assert disk.read_bytes() == before
    assert not (tmp_path / "s.sock").exists()


def test_a_forced_format_overwrites_and_says_what_it_overwrote(tmp_path):
    disk = mbr_disk(tmp_path)
    server = StatefsServer(lambda: FileBlockDevice(disk), str(tmp_path / "s.sock"))
    with pytest.raises(StatefsError) as info:
        server.open_store()
    assert info.value.errno == errno.EMEDIUMTYPE
    assert server.open_store(force_format=True) is True
    assert "an MBR partition table" in server.overwritten
    server.store.put("/state/a", b"1")
    server.close_store()
    with Store.open(FileBlockDevice(disk)) as store:
        assert store.get("/state/a") == b"1"


def test_a_blank_disk_is_formatted_without_force(tmp_path):
    disk = tmp_path / "disk.img"
    FileBlockDevice.create(disk, 4 << 20).close()
    server = StatefsServer(lambda: FileBlockDevice(disk), str(tmp_path / "s.sock"))
    assert server.open_store() is True
    assert server.overwritten == ""
    server.close_store()


@pytest.mark.parametrize(("value", "force"), [(None, False), ("force", True)])
def test_the_kernel_argument_sq_format(value, force):
    params = {"sq.nonce": NONCE} | ({"sq.format": value} if value else {})
    assert ContractParams(params).force_format is force
    with pytest.raises(ValueError, match="sq.format"):
        ContractParams({"sq.nonce": NONCE, "sq.format": "yes"})
