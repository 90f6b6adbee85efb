"""Observe, plan, act: the reconcile loop and its steps, deploys and changes, repair,
rollouts, scaling, teardown, the store's watch and the leader lease. Every change to a
service goes through here. Imports ``ingress`` and below."""
