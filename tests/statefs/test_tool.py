"""The offline tool on real image files: ``python -m guest.statefs fsck|ls|get|dump``."""

import subprocess
import sys
from pathlib import Path

import pytest

from guest.statefs import FileBlockDevice, Store
from guest.statefs.layout import RECORD_HEADER_BYTES
from guest.statefs.tool import CLEAN, TOLERATED, UNRECOVERABLE, main

from support.stores import EPOCH, VOLUME_ID

SS = 512
ROOT = Path(__file__).resolve().parents[2]


def make_image(path: Path, sector_size: int = SS) -> Store:
    dev = FileBlockDevice.create(path, 2048 * sector_size, sector_size=sector_size)
    store = Store.format(dev, volume_id=VOLUME_ID, epoch=EPOCH)
    store.put("/state/boot/active", b"A")
    store.put("/state/blob", bytes(range(256)))
    store.sync()
    store.put("/state/boot/tries", b"3")
    store.sync()
    store.put("/state/later", b"L")
    store.sync()
    return store


def record_lba(store: Store, index: int) -> int:
    """LBA of the record ``index`` (0-based) of a journal of one-sector records."""
    sb = store.superblock
    return sb.region_start(sb.active_region) + index


def corrupt(path: Path, offset: int) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))


def run(capsysbinary, *argv: str) -> tuple[int, bytes, str]:
    code = main(list(argv))
    out, err = capsysbinary.readouterr()
    return code, out, err.decode()


@pytest.mark.parametrize("sector_size", [512, 4096])
def test_a_clean_image_reads_back_with_its_own_sector_size(tmp_path, capsysbinary, sector_size):
    image = tmp_path / "disk.img"
    make_image(image, sector_size).close(sync=False)
    code, out, _ = run(capsysbinary, "fsck", str(image))
    assert code == CLEAN, out
    assert b"fsck: clean" in out
    code, out, _ = run(capsysbinary, "ls", str(image))
    assert (code, out.split()) == (0, [b"/state/blob", b"/state/boot/active",
                                       b"/state/boot/tries", b"/state/later"])  # fmt: skip
    code, out, _ = run(capsysbinary, "ls", str(image), "/state/boot")
    assert out.split() == [b"/state/boot/active", b"/state/boot/tries"]
    code, out, _ = run(capsysbinary, "get", str(image), "/state/blob")
    assert (code, out) == (0, bytes(range(256)))  # raw bytes, no newline added
    code, out, err = run(capsysbinary, "get", str(image), "/state/missing")
    assert code == 1 and out == b"" and "ENOENT" in err


def test_a_torn_tail_is_exit_1_and_only_repair_writes(tmp_path, capsysbinary):
    image = tmp_path / "disk.img"
    store = make_image(image)
    lba = record_lba(store, 2)  # the last group: damage there is what a torn write leaves
    store.close(sync=False)
    corrupt(image, lba * SS + RECORD_HEADER_BYTES + 3)
    before = image.read_bytes()
    code, out, _ = run(capsysbinary, "fsck", str(image))
    assert code == TOLERATED
    assert f"torn record at LBA {lba}".encode() in out
    assert image.read_bytes() == before, "fsck without --repair must not write"
    code, out, _ = run(capsysbinary, "fsck", str(image), "--repair")
    assert b"sealed the torn tail" in out and code == CLEAN, out
    after = image.read_bytes()
    assert after[lba * SS : (lba + 1) * SS] == bytes(SS)
    assert (
        after[: lba * SS] == before[: lba * SS]
        and after[(lba + 1) * SS :] == before[(lba + 1) * SS :]
    )


def test_damage_before_a_later_commit_is_exit_2_naming_the_lba(tmp_path, capsysbinary):
    image = tmp_path / "disk.img"
    store = make_image(image)
    lba = record_lba(store, 1)  # a record with a committed one after it
    store.close(sync=False)
    corrupt(image, lba * SS + RECORD_HEADER_BYTES + 3)
    before = image.read_bytes()
    code, out, _ = run(capsysbinary, "fsck", str(image), "--repair")
    assert code == UNRECOVERABLE
    assert f"journal damaged at LBA {lba}".encode() in out
    assert image.read_bytes() == before, "--repair only ever seals a torn tail"
    code, _, err = run(capsysbinary, "ls", str(image))
    assert code == 1 and "EIO" in err


def test_dump_lists_superblocks_and_records_with_their_operations(tmp_path, capsysbinary):
    image = tmp_path / "disk.img"
    make_image(image).close(sync=False)
    code, out, _ = run(capsysbinary, "dump", str(image))
    text = out.decode()
    assert code == 0
    assert "superblock slot 0: generation 1, region 0, epoch 7, ceiling 7" in text
    assert f"LBA 2: epoch {EPOCH} (current epoch) seq 1 flags 0 2 ops" in text
    assert "PUT '/state/blob' (256 bytes)" in text
    assert "seq 3 flags 0 1 ops" in text


def test_an_image_without_a_superblock_needs_the_sector_size(tmp_path, capsysbinary):
    image = tmp_path / "blank.img"
    FileBlockDevice.create(image, 2048 * SS).close()
    code, _, err = run(capsysbinary, "fsck", str(image))
    assert code == UNRECOVERABLE and "--sector-size" in err
    code, out, _ = run(capsysbinary, "fsck", str(image), "--sector-size", "512")
    assert code == UNRECOVERABLE and b"holds no statefs superblock" in out


def test_the_module_runs_as_a_command(tmp_path):
    image = tmp_path / "disk.img"
    make_image(image).close(sync=False)
    done = subprocess.run(
        [sys.executable, "-m", "guest.statefs", "get", str(image), "/state/boot/active"],
        cwd=ROOT, capture_output=True, check=False, timeout=60,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (0, b"A"), done.stderr
