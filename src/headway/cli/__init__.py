"""The ``headway`` command: argument parsing, output, and the HTTP client that talks to the
control plane (started on demand through ``daemon``). The top layer."""
