"""Every agent of the worker, registered on the one Faust app by importing its module."""

from __future__ import annotations

import faust


def register_all() -> faust.App:
    from stream.agents import aggregator, monitoring, vitals  # noqa: F401
    from stream.app import app

    return app
