"""Suite-wide pytest configuration.

pytest puts this folder (`tests/`) on sys.path when it imports this file, so `fixtures.stubs` is importable
from every test module, and the stub-server fixtures below are available everywhere.
"""

pytest_plugins = ["fixtures.stubs.plugin"]
