"""Break one proof in the real VM and the contract fails, naming what broke.

Boot 1 runs the full contract on a fresh disk; before boot 2 starts, this test damages one byte
of the disk the way a bad sector or a lost write would. Boot 2 must not print the marker whose
proof the damage breaks, and the report must name the missing marker or the failure line.
"""

from pathlib import Path

import pytest

from guest.statefs import FileBlockDevice, Store, StoreConfig
from harness.contract.runner import ContractRunner, RunOptions, contract_config
from harness.contract.spec import Contract
from harness.image import ensure_image
from harness.vm.disks import create_disk

LAST_BOOT_KEY = b"/state/selftest/last-boot"


def record_offsets(disk: Path) -> list[tuple[int, int]]:
    """(byte offset in the disk, length) of each record of the active region, in order."""
    with Store.open(FileBlockDevice(disk), StoreConfig(read_only=True)) as store:
        sb = store.superblock
        records = store.replay.records
    from guest.statefs.layout import RECORD_HEADER, RECORD_HEADER_BYTES, round_up

    data = disk.read_bytes()
    offset = sb.region_start(sb.active_region) * sb.sector_size
    found = []
    for _ in range(records):
        payload_bytes = RECORD_HEADER.unpack_from(data, offset)[8]
        found.append((offset, RECORD_HEADER_BYTES + payload_bytes))
        offset += round_up(RECORD_HEADER_BYTES + payload_bytes, sb.sector_size)
    return found


def flip(disk: Path, offset: int) -> None:
    with open(disk, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)[0]
        handle.seek(offset)
        handle.write(bytes([byte ^ 0x40]))


def run_with_damage(tmp_path: Path, damage) -> tuple[object, str]:
    disk = create_disk(tmp_path / "disk.img", 16)

    def before_boot(number: int, _machine) -> None:
        if number == 2:
            damage(disk)

    runner = ContractRunner(
        contract_config(ensure_image(), disk),
        Contract.load(),
        run_dir=tmp_path / "run",
        options=RunOptions(),
        on_boot_start=before_boot,
    )
    result = runner.run()
    return result, result.report()


@pytest.mark.qemu
def test_a_damaged_committed_record_stops_statefsd_and_fails_boot_two(tmp_path: Path):
    def damage(disk: Path) -> None:
        first_offset, length = record_offsets(disk)[0]  # boot 1's first commit: mid-journal
        flip(disk, first_offset + length - 1)

    result, report = run_with_damage(tmp_path, damage)
    assert not result.passed
    assert [boot.passed for boot in result.boots] == [True, False]
    assert "statefsd: fatal EIO" in report
    assert "journal damaged at LBA" in report


@pytest.mark.qemu
def test_a_damaged_last_boot_record_fails_the_reboot_proof(tmp_path: Path):
    def damage(disk: Path) -> None:
        data = disk.read_bytes()
        for offset, length in reversed(record_offsets(disk)):
            where = data.find(LAST_BOOT_KEY, offset, offset + length)
            if where >= 0:
                flip(disk, where + len(LAST_BOOT_KEY) + 5)  # inside the JSON value
                return
        raise AssertionError("boot 1 left no last-boot record")

    result, report = run_with_damage(tmp_path, damage)
    assert not result.passed
    assert "SELFTEST: reboot persist FAIL" in report
    assert "reboot-persist" in report
