"""The ``headway`` command: argument parsing, output, and the HTTP client that talks to the
control plane (started on demand through ``daemon``). The top layer.

Its modules load the layers below only inside the command that needs them, and a read
that falls back to the state dir (no control plane answers) goes through ``cli.local``
alone: ``headway --help`` and tab completion load no Ray, SSH, store or HTTP library."""
