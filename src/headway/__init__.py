"""headway: Ray Serve services that survive the death of their head node.

The package is a stack of layers, each a folder that may import only the folders below it
(checked by ``lint-imports`` against the contract in ``pyproject.toml``), top to bottom:
``cli`` → ``daemon`` → ``api`` → ``control`` → ``ingress`` → ``cluster`` → ``store`` →
``hosts`` → ``state`` → ``system`` → ``plan`` → ``model``. ``docs/internals.md`` draws the map.
"""
