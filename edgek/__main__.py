"""``python -m edgek``: the same as the ``edgek`` command."""

from edgek.cmd.main import main

main()
