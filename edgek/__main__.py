"""``python -m edgek``: the same as the ``edgek`` command."""

from edgek.cli import main

main()
