"""Ray nodes: the provider protocol and its local and SSH implementations, Ray's settings
and command lines (``ray_node``), the GCS and Serve clients, a service's dependencies and
package, and the firewall around a node. Imports ``store`` and below."""
