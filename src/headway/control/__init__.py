"""Observe, plan, act: the context every unit of work is handed (``context``), the reconcile
loop and its steps, deploys and changes, repair, the head-down guard, store credentials,
rollouts, scaling, teardown, the store's watch and the leader lease. Every change to a
service goes through here. Imports ``ingress`` and below."""
