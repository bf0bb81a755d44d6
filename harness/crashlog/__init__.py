"""Every crash state of a real guest run: QEMU's ``blklogwrites`` log, rebuilt and judged.

::

    logformat  the Linux dm-log-writes format QEMU writes: super entry, entries, flags
    history    a parsed log as a crash-simulator Recording, commit points from the workload
    judge      one crash state, opened with the host's statefs, against the workload
    guestrun   the VM runs: the recorded workload, and a boot of one crash state
    campaign   record, check, judge every state, boot a seeded sample (``crash-states``)
    report     the table, the closing line, crash-states.json, the merge of shards
    cli        the command's flags (``python -m harness crash-states``)
"""

from harness.crashlog.logformat import BlockLog, LogEntry, LogFormatError, parse_log, read_log

__all__ = ["BlockLog", "LogEntry", "LogFormatError", "parse_log", "read_log"]
