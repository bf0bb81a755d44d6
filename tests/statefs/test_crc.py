"""CRC-32C: both implementations compute the same function, and the store works on each."""

import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guest.statefs import crc


def implementations():
    found = {"crcmod": crc._crcmod()}
    try:
        found["crc32c"] = crc._crc32c()
    except ImportError:
        pass
    return found


@pytest.mark.parametrize("name", sorted(implementations()))
def test_check_value_and_continuation(name):
    fn = implementations()[name]
    assert fn(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert fn(b"") == 0
    assert fn(b"6789", fn(b"12345")) == fn(b"123456789")


@given(data=st.binary(max_size=4096), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=300, deadline=None, derandomize=True)
def test_the_implementations_agree(data, seed):
    values = {name: fn(data, seed) for name, fn in implementations().items()}
    assert len(set(values.values())) == 1, values


def test_the_faster_one_is_chosen_when_present():
    assert ("crc32c" if "crc32c" in implementations() else "crcmod") == crc.BACKEND


@pytest.mark.parametrize("backend", ["crcmod", "crc32c"])
def test_a_store_written_under_one_backend_reads_under_the_other(tmp_path, backend):
    if backend not in implementations():
        pytest.skip(f"{backend} is not installed")
    other = "crc32c" if backend == "crcmod" else "crcmod"
    if other not in implementations():
        pytest.skip(f"{other} is not installed")
    disk = tmp_path / "disk.img"
    write = (
        "from guest.statefs import FileBlockDevice, Store, crc\n"
        f"assert crc.BACKEND == {backend!r}\n"
        f"s = Store.format(FileBlockDevice.create({str(disk)!r}, 1 << 20))\n"
        "s.put('/state/a', b'x' * 1000); s.close()\n"
    )
    read = (
        "from guest.statefs import FileBlockDevice, Store, crc\n"
        f"assert crc.BACKEND == {other!r}\n"
        f"assert Store.open(FileBlockDevice({str(disk)!r})).get('/state/a') == b'x' * 1000\n"
    )
    for code, choice in ((write, backend), (read, other)):
        env = {**os.environ, "STATEFS_CRC": choice}
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, check=False
        )
        assert done.returncode == 0, done.stderr.decode()


def test_an_unknown_choice_is_refused():
    env = {**os.environ, "STATEFS_CRC": "fast"}
    done = subprocess.run(
        [sys.executable, "-c", "import guest.statefs"], env=env, capture_output=True, check=False
    )
    assert b"STATEFS_CRC='fast'" in done.stderr
