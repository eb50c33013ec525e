"""The fault campaign (docs/faults.md): simulated patients with scripted episodes through
the broker, two workers and Redis while faults are injected, and what it cost.

``proxy`` severs one client's connections to the broker, ``gateway`` is the campaign's
device gateway (a process it can burst), ``scoring`` turns what was observed into the
counts (pure), ``campaign`` runs it all (``bench/faults.py``)."""
