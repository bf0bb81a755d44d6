"""Benchmarks for statefs-qemu: numbers that say whether ``/state`` is worth choosing.

``python -m bench`` (``make bench``) prints tables and writes ``bench/results/``; nothing here
runs in ``make test`` except a toy-sized smoke test that keeps the code from rotting
(``tests/bench/test_bench_smoke.py``). Subcommands: ``store`` (host: statefs against the
physical limit, sqlite3 and lmdb), ``vm`` (the contract's timeline and statefsd throughput in
the guest), ``scale`` (pytest-xdist, 1 vs 2 workers). ``bench/README.md`` has the latest figures.
"""
