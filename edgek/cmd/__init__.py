"""The ``edgek`` command line, one module per command or command group; only the console
script (``edgek.cmd.main``) and ``python -m edgek`` import it."""
