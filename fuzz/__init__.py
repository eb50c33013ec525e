"""Fuzzing of the message decoders (docs/fuzzing.md): ``targets`` is the list of decoders
and their contract, ``mutations`` structure-aware JSON mutations, ``run`` the atheris
harness (``make fuzz``)."""
