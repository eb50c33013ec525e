from __future__ import annotations

from pathlib import Path

import pytest

from stream.settings import Settings


@pytest.fixture(scope="session")
def data_root() -> Path:
    return Path(Settings().data_dir)


@pytest.fixture(scope="session")
def runtime():
    from models.runtime import ModelRuntime

    return ModelRuntime.load_default()
