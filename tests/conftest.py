"""Top-level test configuration.

``pytester`` (used by tests/harness to test the pytest plugin) must be enabled here: pytest
accepts ``pytest_plugins`` only in a top-level conftest.
"""

pytest_plugins = ["pytester"]
