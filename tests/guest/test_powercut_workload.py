"""The power-cut workload and its check, on the host (the VM campaign runs the same code)."""

import pytest

from guest.selftest import powercut
from guest.statefs import FileBlockDevice

from support.statefsd_thread import ServerThread

NONCE = "0123456789abcdef"


@pytest.fixture
def statefsd(tmp_path):
    disk = tmp_path / "disk.img"
    FileBlockDevice.create(disk, 2 << 20).close()
    server = ServerThread(disk, tmp_path / "s.sock")
    yield server
    server.stop()


def test_write_then_check_roundtrip_with_compactions(statefsd):
    with statefsd.client() as client:
        assert powercut.check(client, NONCE) == 0
        last = powercut.write(client, NONCE, 0, 1000)
        assert last == 1000
        assert powercut.check(client, NONCE) == 1000
        assert client.stats()["compactions"] > 0
        client.reopen()
        assert powercut.check(client, NONCE) == 1000
        assert powercut.write(client, NONCE, 1000, 5) == 1005


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda c: c.delete(powercut.log_key(390), sync=True), "missing"),
        (lambda c: c.put(powercut.log_key(401), b"x", sync=True), "extra"),
        (lambda c: c.put(powercut.log_key(395), b"altered", sync=True), "altered"),
        (lambda c: c.put(powercut.HEAD_KEY, b"nope", sync=True), "head unreadable"),
    ],
)
def test_check_names_each_kind_of_damage(statefsd, damage, reason):
    with statefsd.client() as client:
        powercut.write(client, NONCE, 0, 400)
        damage(client)
        with pytest.raises(ValueError, match=reason):
            powercut.check(client, NONCE)


def test_values_vary_in_size_and_depend_on_the_nonce():
    sizes = {len(powercut.value_for(NONCE, seq)) for seq in range(1, 200)}
    assert min(sizes) >= 16
    assert max(sizes) > 1500
    assert powercut.value_for(NONCE, 7) != powercut.value_for("ffffffffffffffff", 7)


def test_large_batches_reach_their_value_max_and_check_with_it(statefsd):
    sizes = {len(powercut.value_for(NONCE, seq, 16384)) for seq in range(1, 200)}
    assert min(sizes) >= 16 and 12000 < max(sizes) <= 16384
    with statefsd.client() as client:
        assert powercut.write(client, NONCE, 0, 60, 16384) == 60
        assert powercut.check(client, NONCE, 16384) == 60
        with pytest.raises(ValueError, match="altered"):
            powercut.check(client, NONCE)  # the default sizes: every value differs


@pytest.mark.parametrize("text", ["15", "70000", "x"])
def test_a_bad_value_max_is_refused(text):
    with pytest.raises(ValueError, match="sq.value_max"):
        powercut.value_max_of({"sq.value_max": text})
