"""Faust agents, one module per thing consumed. Importing a module registers its agents on
the one app (``stream.app``); :func:`stream.agents.registry.register_all` imports them all."""
