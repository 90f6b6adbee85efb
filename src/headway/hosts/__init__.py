"""Other machines, reached over SSH: the transport (``ssh``), checked folders, private files
and detached processes on a host (``remote``), and the floating address (keepalived,
``vip``). What the hosts are is the cloud config, ``model.cloud_config``. Imports ``state``
and below."""
