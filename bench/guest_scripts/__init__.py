"""Python run *inside* the VM (``sq.mode=script``) by ``python -m bench vm``.

Each module is ordinary, linted Python that imports only what the guest image ships (the stdlib
closure of ``guest/`` plus ``guest`` itself) and runs its ``main()`` when PID 1 executes it
(``__name__ == "__sq_script__"``). :func:`bench.guest_payload.payload` strips docstrings and
compresses it to fit the kernel command line. Results come back as console lines starting with
``BENCH:`` (one measurement) or ``PROF|`` (a line of ``-X importtime`` output).
"""
