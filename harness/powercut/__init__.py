"""Power cuts for real: the VM's disk behind a write-back cache the harness controls.

``kill -9`` on QEMU is not a power cut: what QEMU already wrote sits in the host's page cache
and survives. So the VM's disk is served by nbdkit through a Python plugin that keeps every
write since the last flush in a cache of its own; the harness cuts the power by freezing that
server and killing QEMU, then decides offline, seeded, which cached writes reached the "media"
(see ``docs/testing/powercut.md``).

Module map (one job each)::

    errors    PowerCutError and its subclasses (under harness.errors.HarnessError)
    journal   the on-disk formats: the pending-write journal and the undo record
    cache     WriteBackCache: overlay reads, journaled writes, flush with undo (the plugin's core)
    plugin    the nbdkit Python plugin (API version 2): glue from NBD requests to the cache
    fates     offline: roll back an unfinished flush, pick the fate of the pending writes
    server    DiskServer: one nbdkit process, own process group, never left behind
    watch     the console of one power-cut boot: recovery marker, issued and acked writes
    verdict   the rules that judge a cycle
    cut       when the cut comes (delay, trigger) and the order the plug is pulled in
    campaign  the cycle loop: boot, write, cut, resolve, boot again, judge
    report    the per-cycle table, the summary and powercut.json
    cli       ``python -m harness powercut``

Nothing is imported here: nbdkit's embedded interpreter imports ``harness.powercut.cache``,
which must not pull in the rest of the harness (pexpect, qemu.qmp are not installed there).
"""
