"""What the control plane remembers: the SQLite db, the service/node/ingress records and
their locks, uploads, the leader's state snapshot, and where a running control plane is.
Imports ``system`` and below."""
