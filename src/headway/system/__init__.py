"""This machine: the state dir's paths and private files, processes, bundled binaries,
network namespaces, and the node sandbox (its uids and its supervisor). The lowest layer that
does I/O; imports only ``model``."""
