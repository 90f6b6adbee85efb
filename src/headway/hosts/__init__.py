"""Other machines, reached over SSH: the cloud's host config, checked folders and private
files on a host, processes started there, and the floating address (keepalived VIP).
Imports ``state`` and below."""
