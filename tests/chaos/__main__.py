"""``python -m tests.chaos --seconds N``: see tests/chaos/run.py."""

from tests.chaos.run import main

main()
