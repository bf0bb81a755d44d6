"""The crash simulator's machinery: write logs and every crash state they allow.

Host-side and standard library only (plus :mod:`guest.statefs`'s block-device base), so both
the host crash tests and a replayer of a real guest's block log build on it::

    log         WriteLog: sector writes and completed flushes from an initial image (the input)
    recording   Recording: a WriteLog with commit marks, and which model states each crash allows
    states      crash_states(): every prefix, subset and tear of each flush window; Depth
    overlay     OverlayDevice: a crash state read through a shared base image, never copied
    devices     CrashDevice (power cut after N operations), RecordingDevice (logs a workload)
"""

from harness.crashsim.devices import CrashDevice, PowerCut, RecordingDevice, SectorWrite
from harness.crashsim.log import FLUSH, Flush, Window, Write, WriteLog
from harness.crashsim.overlay import OverlayDevice
from harness.crashsim.recording import UNFORMATTED, Begin, End, Event, Model, Recording
from harness.crashsim.states import CrashState, Depth, crash_states, tear

__all__ = [
    "FLUSH",
    "UNFORMATTED",
    "Begin",
    "CrashDevice",
    "CrashState",
    "Depth",
    "End",
    "Event",
    "Flush",
    "Model",
    "OverlayDevice",
    "PowerCut",
    "Recording",
    "RecordingDevice",
    "SectorWrite",
    "Window",
    "Write",
    "WriteLog",
    "crash_states",
    "tear",
]
