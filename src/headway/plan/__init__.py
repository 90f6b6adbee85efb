"""Decisions as pure functions of observed state: the reconcile step table, the watchdog,
placement, rollout and autoscaling policy, the store's fitness, and the text headway renders
(HAProxy config, Prometheus metrics). Imports only ``model``; no I/O, unit-tested without Ray."""
