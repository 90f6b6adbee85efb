"""A service's endpoint: the HAProxy process in front of its workers, here or on the
cloud's ingress hosts, with its token and moving address. Imports ``cluster`` and below."""
