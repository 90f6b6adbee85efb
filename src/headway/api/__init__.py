"""The control plane's HTTP face: REST routes, the web dashboard, Prometheus metrics, the
token gate in front of them, and a standby's redirect. Reads the state, asks ``control`` to
act; imports ``control`` and below."""
