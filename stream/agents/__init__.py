"""Faust agents, one module per thing consumed. Importing a module registers its agents."""

from __future__ import annotations

import faust


def register_all() -> faust.App:
    from stream.agents import aggregator, monitoring, vitals  # noqa: F401
    from stream.app import app

    return app
