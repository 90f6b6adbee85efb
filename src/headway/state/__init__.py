"""What the control plane remembers: the SQLite db, the service/node/ingress records, the
one way a service changes state (``transitions``), a service's locks, uploads, the leader's
state snapshot, and where a running control plane is (and starting it). Imports ``system``
and below."""
