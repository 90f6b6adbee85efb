"""``python -m headway.cli``: the same as the ``headway`` command."""

from headway.cli.main import main

main()
