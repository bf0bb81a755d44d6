"""The crash-state generator itself: it enumerates what it claims, and the oracle's acceptable
sets are the strict ones. Uses a tiny hand-written recording, no store."""

import subprocess
import sys

import pytest

from guest.statefs import MemoryBlockDevice
from harness.crashsim import (
    Begin,
    Depth,
    End,
    Flush,
    OverlayDevice,
    PowerCut,
    Recording,
    RecordingDevice,
    Write,
    WriteLog,
    crash_states,
    tear,
)

SS = 512


def sector(tag: int) -> bytes:
    return bytes([tag]) * SS


def recording_with_windows(*windows: int) -> Recording:
    """Windows of the given sizes, one write call of one sector each, distinct contents."""
    dev = RecordingDevice(SS, 64, initial_state={})
    tag = 1
    for size in windows:
        for _ in range(size):
            dev.write(tag, sector(tag))
            tag += 1
        dev.flush()
    return dev.recording


def kept_lbas(recording: Recording, window: int, depth: Depth) -> list[frozenset[int]]:
    """The sets of whole sectors persisted by the window's untorn states."""
    return [
        frozenset(state.overlay)
        for state in crash_states(recording, depth)
        if state.window == window
        and all(data == sector(lba) for lba, data in state.overlay.items())
    ]


def test_the_recording_logs_sectors_calls_and_completed_flushes_only():
    dev = RecordingDevice(SS, 16)
    dev.write(3, sector(1) + sector(2) + sector(3))
    dev.flush()
    dev.write(7, sector(9))
    dev.schedule_power_cut(1)
    dev.write(8, sector(8))
    with pytest.raises(PowerCut):
        dev.flush()
    events = dev.recording.events
    assert events[:3] == [Write(3, sector(1), 0), Write(4, sector(2), 0), Write(5, sector(3), 0)]
    assert isinstance(events[3], Flush)
    assert events[4:] == [Write(7, sector(9), 1), Write(8, sector(8), 2)]
    assert [len(window.writes) for window in dev.recording.windows()] == [3, 2]


def test_small_windows_get_every_subset():
    recording = recording_with_windows(4, 3)
    assert len(set(kept_lbas(recording, 0, Depth()))) == 2**4
    assert len(set(kept_lbas(recording, 1, Depth()))) == 2**3


def test_large_windows_are_sampled_deterministically():
    recording = recording_with_windows(14)
    depth = Depth()
    subsets = set(kept_lbas(recording, 0, depth))
    assert 14 + 1 < len(subsets) < 2**14
    labels = [state.label for state in crash_states(recording, depth, seed=3)]
    assert labels == [state.label for state in crash_states(recording, depth, seed=3)]
    assert labels != [state.label for state in crash_states(recording, depth, seed=4)]


def test_every_prefix_of_the_whole_write_sequence_is_a_state():
    recording = recording_with_windows(3, 12, 2)
    writes = [event for event in recording.events if isinstance(event, Write)]
    images = {state.image(SS) for state in crash_states(recording, Depth())}
    for count in range(len(writes) + 1):
        image = bytearray(recording.initial)
        for write in writes[:count]:
            image[write.lba * SS : (write.lba + 1) * SS] = write.data
        assert bytes(image) in images, f"prefix {count} missing"


def test_multi_sector_writes_are_torn_and_sectors_torn_both_ways():
    dev = RecordingDevice(SS, 64, initial_state={})
    dev.write(1, b"".join(sector(index) for index in range(1, 13)))  # one 12-sector call
    recording = dev.recording
    labels = [state.label for state in crash_states(recording, Depth())]
    assert any("call 0 (12 sectors) torn: last only" in label for label in labels)
    assert any("torn at byte 8 (new head)" in label for label in labels)
    assert any("torn at byte 8 (new tail)" in label for label in labels)
    assert tear(b"old!old!", b"NEW?NEW?", 3, new_head=True) == b"NEW!old!"
    assert tear(b"old!old!", b"NEW?NEW?", 3, new_head=False) == b"old?NEW?"


def test_4096_byte_sectors_are_torn_inside_the_header_and_across_512_byte_blocks():
    dev = RecordingDevice(4096, 16, initial_state={})
    dev.write(2, bytes([7]) * 4096)
    offsets = {
        int(state.label.split("byte ")[1].split()[0])
        for state in crash_states(dev.recording, Depth())
        if "torn at byte" in state.label
    }
    assert {8, 2048} <= offsets


def test_acceptable_states_are_intersected_over_the_crash_points():
    """Nothing of the window after a completed commit persisted: the crash may have been just
    after that commit returned, so only its state is acceptable, not the one before it."""
    rec = Recording(SS, 8, bytes(8 * SS))
    rec.add_state({})  # 0: committed at the start
    one, two = rec.add_state({"/state/a": b"1"}), rec.add_state({"/state/a": b"2"})
    rec.events += [Begin(one, "sync"), Write(2, sector(1), 0), Flush(), End(one)]
    rec.events += [Begin(two, "sync"), Write(3, sector(2), 1), Flush(), End(two)]
    assert rec.allowed(1, 2) == {0, one}  # inside the first sync
    assert rec.allowed(3, 6) == {one}  # from its flush to inside the second sync
    assert rec.allowed(6, 6) == {one, two}
    states = {state.label: state.allowed for state in crash_states(rec, Depth())}
    assert states["w1 prefix 0/1"] == {one}
    assert states["w1 prefix 1/1"] == {one, two}


def test_the_overlay_device_reads_through_and_keeps_its_own_writes():
    base = bytes(range(256)) * 2 * 8
    dev = OverlayDevice(base, SS, {3: sector(9)})
    assert dev.read(2, 3) == base[2 * SS : 3 * SS] + sector(9) + base[4 * SS : 5 * SS]
    dev.write(0, sector(5) * 2)
    dev.flush()
    assert dev.read(0, 2) == sector(5) * 2
    assert base[:SS] != sector(5)  # the shared base is never written
    assert MemoryBlockDevice.from_image(base, SS).read(3, 1) == base[3 * SS : 4 * SS]


def test_depth_grows_with_the_knob():
    fast, deep = Depth.at(1), Depth.at(3)
    assert deep.seeds == 3 and deep.samples > fast.samples
    assert set(fast.tear_offsets) < set(deep.tear_offsets)
    with pytest.raises(ValueError):
        Depth.at(0)


def test_a_bare_write_log_feeds_the_generator():
    """A log built from writes and flushes alone (as a guest block log replayer builds one):
    the same windows and states as a recording of the same writes, no model states known."""
    log = WriteLog(SS, 16, bytes(16 * SS), name="guest")
    log.write(2, sector(1) + sector(2))
    log.flush()
    log.write(5, sector(3))
    assert [len(window.writes) for window in log.windows()] == [2, 1]
    states = list(crash_states(log, Depth()))
    assert {frozenset(state.overlay) for state in states} >= {
        frozenset(),
        frozenset({2}),
        frozenset({3}),
        frozenset({2, 3}),
        frozenset({5}),
    }
    assert all(state.allowed == frozenset() for state in states)
    with pytest.raises(ValueError, match="does not fit"):
        log.write(15, sector(1) * 2)


def test_the_package_imports_only_the_standard_library_and_the_store():
    """harness.crashsim runs outside the test tree (a log replayer, nbdkit-free hosts): beyond
    what guest.statefs itself needs, it may import the standard library and nothing else."""
    code = (
        "import sys; import guest.statefs; before = set(sys.modules); import harness.crashsim; "
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split()
    assert "harness.crashsim.states" in loaded, "the probe imported nothing: it is broken"
    foreign = [
        name
        for name in loaded
        if name != "harness"
        and not name.startswith("harness.crashsim")
        and name.split(".")[0] not in sys.stdlib_module_names
    ]
    assert not foreign, f"harness.crashsim pulls in {foreign}"
