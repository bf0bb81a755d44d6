"""The marker contract: what the guest must print, and how a run is judged against it.

Module map (one job each)::

    spec           the contract as data (contract.toml next to it): load and validate
    contract.toml  the project's contract: boots, kernel arguments, markers, failure lines
    matcher        BootMatcher: order-tolerant matching, verdicts and reports (plain text in)
    runner         watch_boot / run_boot / ContractRunner: boot sequences on one disk
    history        replay a past run's console (the `markers` view)
    progress       live progress lines for a terminal or CI log

Nothing is imported here.
"""
