"""Put/Get/Delete/List/Sync and the errors they promise."""

import errno

import pytest

from guest.statefs import (
    MAX_VALUE_BYTES,
    FileBlockDevice,
    MemoryBlockDevice,
    StatefsError,
    Store,
    StoreConfig,
    UnformattedError,
)

from support.stores import crash_and_reopen, new_store


def test_put_get_delete_list(store):
    store.put("/state/boot/active", b"A")
    store.put("/state/boot/slot/a", b"\x01")
    store.put("/state/bootloader", b"x")
    store.put("/state/keystore/device", b"k" * 32)
    assert store.get("/state//boot/active/") == b"A"
    assert store.list("/state/boot") == ["/state/boot/active", "/state/boot/slot/a"]
    assert store.list("/state/boot/slot/a") == ["/state/boot/slot/a"]
    assert store.list() == sorted(
        ["/state/boot/active", "/state/boot/slot/a", "/state/bootloader", "/state/keystore/device"]
    )
    store.delete("/state/boot/active")
    assert store.list("/state/boot") == ["/state/boot/slot/a"]
    assert len(store) == 3
    assert "/state/bootloader" in store


def test_overwrite_keeps_the_last_value(store):
    for value in (b"1", b"22", b"333"):
        store.put("/state/v", value)
    store.sync()
    assert crash_and_reopen(store).get("/state/v") == b"333"


@pytest.mark.parametrize("op", ["get", "delete"])
def test_missing_key_is_enoent(store, op):
    with pytest.raises(StatefsError) as info:
        getattr(store, op)("/state/nothing")
    assert info.value.errno == errno.ENOENT
    assert "/state/nothing" in str(info.value)


def test_deleted_key_is_enoent_after_replay(store):
    store.put("/state/gone", b"x")
    store.sync()
    store.delete("/state/gone")
    store.sync()
    reopened = crash_and_reopen(store)
    with pytest.raises(StatefsError) as info:
        reopened.get("/state/gone")
    assert info.value.errno == errno.ENOENT


def test_value_size_limit(store):
    store.put("/state/max", b"m" * MAX_VALUE_BYTES)
    with pytest.raises(StatefsError) as info:
        store.put("/state/big", b"m" * (MAX_VALUE_BYTES + 1))
    assert info.value.errno == errno.EFBIG
    store.sync()
    assert crash_and_reopen(store).get("/state/max") == b"m" * MAX_VALUE_BYTES


@pytest.mark.parametrize("value", ["text", 5, None, [1]])
def test_value_must_be_bytes(store, value):
    with pytest.raises(StatefsError) as info:
        store.put("/state/k", value)
    assert info.value.errno == errno.EINVAL


def test_bad_key_changes_nothing(store):
    store.put("/state/a", b"1")
    for bad in ("/state/../a", "/tmp/a", "/state/a\x00"):
        with pytest.raises(StatefsError):
            store.put(bad, b"2")
    assert store.pending_ops == 1
    assert store.get("/state/a") == b"1"


def test_value_buffer_is_copied(store):
    buf = bytearray(b"before")
    store.put("/state/buf", buf)
    buf[:] = b"after!"
    assert store.get("/state/buf") == b"before"


def test_unsynced_changes_are_lost_on_crash_synced_are_kept(store):
    store.put("/state/synced", b"1")
    store.sync()
    store.put("/state/unsynced", b"2")
    store.delete("/state/synced")
    reopened = crash_and_reopen(store)
    assert reopened.list() == ["/state/synced"]
    assert reopened.get("/state/synced") == b"1"


def test_sync_without_changes_writes_nothing(store):
    before = bytes(store._dev.data)
    store.sync()
    assert bytes(store._dev.data) == before
    assert store.counters["syncs"] == 0


def test_close_syncs_pending_changes():
    dev = MemoryBlockDevice(512, 4096)
    store = Store.format(dev)
    store.put("/state/closing", b"yes")
    store.close()
    assert Store.open(MemoryBlockDevice.from_image(bytes(dev.data))).get("/state/closing") == b"yes"
    with pytest.raises(StatefsError) as info:
        store.get("/state/closing")
    assert info.value.errno == errno.EBADF
    store.close()  # idempotent


def test_commit_group_limit_is_enobufs_and_loses_nothing():
    store = new_store(sectors=2048)
    value = b"v" * 60000
    index = 0
    with pytest.raises(StatefsError) as info:
        while True:
            store.put(f"/state/k{index}", value)
            index += 1
    assert info.value.errno == errno.ENOBUFS
    assert store.pending_ops == index
    store.sync()
    reopened = crash_and_reopen(store)
    assert len(reopened) == index


def test_full_store_is_enospc_and_every_committed_key_survives():
    store = new_store(sectors=2048)
    written = {}
    value = b"x" * 4000
    with pytest.raises(StatefsError) as info:
        for index in range(10_000):
            key = f"/state/fill/{index:05d}"
            store.put(key, value)
            written[key] = value
            store.sync()
    assert info.value.errno == errno.ENOSPC
    assert len(written) > 50
    # The failed put changed nothing; overwrites and deletes still work when full.
    store.put(next(iter(written)), b"small")
    store.delete(list(written)[1])
    store.sync()
    written[next(iter(written))] = b"small"
    del written[list(written)[1]]
    reopened = crash_and_reopen(store)
    assert {key: reopened.get(key) for key in reopened.list()} == written
    assert reopened.fsck().ok


def test_unformatted_device_is_enodata_and_open_or_format_formats_it():
    dev = MemoryBlockDevice(512, 4096)
    with pytest.raises(UnformattedError) as info:
        Store.open(dev)
    assert info.value.errno == errno.ENODATA
    store, formatted = Store.open_or_format(dev)
    assert formatted
    store.put("/state/x", b"1")
    store.sync()
    again, formatted = Store.open_or_format(MemoryBlockDevice.from_image(bytes(dev.data)))
    assert not formatted
    assert again.get("/state/x") == b"1"


def test_too_small_device_is_einval():
    with pytest.raises(StatefsError) as info:
        Store.format(MemoryBlockDevice(512, 64))
    assert info.value.errno == errno.EINVAL
    assert "too small" in str(info.value)


def test_sector_size_mismatch_is_einval(store):
    image = bytes(store._dev.data)
    with pytest.raises(StatefsError) as info:
        Store.open(MemoryBlockDevice.from_image(image, 4096))
    assert info.value.errno == errno.EINVAL


def test_shrunken_device_is_eio(store):
    image = bytes(store._dev.data)[: 2048 * 512]
    with pytest.raises(StatefsError) as info:
        Store.open(MemoryBlockDevice.from_image(image))
    assert info.value.errno == errno.EIO


def test_read_only_store_refuses_writes(store):
    store.put("/state/a", b"1")
    store.sync()
    reader = crash_and_reopen(store, read_only=True)
    assert reader.get("/state/a") == b"1"
    with pytest.raises(StatefsError) as info:
        reader.put("/state/b", b"2")
    assert info.value.errno == errno.EROFS


def test_file_backed_store_survives_reopen(tmp_path):
    path = tmp_path / "state.img"
    with Store.format(FileBlockDevice.create(path, 4 << 20)) as store:
        store.put("/state/file", b"durable")
        store.sync()
    with Store.open(FileBlockDevice(path)) as store:
        assert store.get("/state/file") == b"durable"


def test_4k_sectors():
    store = new_store(sectors=512, sector_size=4096)
    store.put("/state/a", b"1")
    store.sync()
    assert crash_and_reopen(store).get("/state/a") == b"1"


def test_stats_report_what_happened(store):
    store.put("/state/a", b"1")
    store.sync()
    stats = store.stats()
    assert stats["live_keys"] == 1
    assert stats["syncs"] == 1
    assert stats["flushes"] == 1
    assert stats["bytes_written"] == 512
    assert stats["journal_bytes"] == 512


def test_config_validation():
    with pytest.raises(StatefsError):
        StoreConfig(compact_garbage_ratio=0.5)
