"""Property-based fuzzing of every message decoder (fuzz/targets.py has the list and the
contract): any bytes give a usable record or the decoder's one documented exception.

Bounded example counts keep this part of ``make test`` to seconds; ``make fuzz`` runs the
coverage-guided atheris harness over the same targets for as long as one wants.
"""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.mutations import INTERESTING, _paths, mutate_bytes
from fuzz.targets import TARGETS, DecoderTarget, json_seed_objects, run_one

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
JSON_TARGETS = [t for t in TARGETS.values() if json_seed_objects(t)]

# Any JSON value, plus the values that broke decoders before (huge integers, non-finite
# floats, a lone surrogate, nesting).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.sampled_from(INTERESTING),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


def _ids(targets: list[DecoderTarget]) -> list[str]:
    return [t.name for t in targets]


@pytest.mark.parametrize("target", list(TARGETS.values()), ids=_ids(list(TARGETS.values())))
@FUZZ
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes_are_a_record_or_the_documented_error(target: DecoderTarget, data: bytes) -> None:
    run_one(target, data)


@pytest.mark.parametrize("target", list(TARGETS.values()), ids=_ids(list(TARGETS.values())))
@FUZZ
@given(flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 255)), min_size=1, max_size=8),
       cut=st.integers(min_value=0))
def test_corrupted_and_truncated_seeds(target: DecoderTarget, flips: list[tuple[int, int]], cut: int) -> None:
    for seed in target.seeds():
        data = bytearray(seed)
        for pos, xor in flips:
            data[pos % len(data)] ^= xor
        run_one(target, bytes(data))
        run_one(target, bytes(data[: cut % (len(data) + 1)]))


@pytest.mark.parametrize("target", JSON_TARGETS, ids=_ids(JSON_TARGETS))
@FUZZ
@given(st.data())
def test_fields_of_any_type_presence_or_nesting(target: DecoderTarget, data: st.DataObject) -> None:
    """A seed with one of its fields (at any depth) replaced, removed or joined by another."""
    obj = data.draw(st.sampled_from(json_seed_objects(target)))
    path = data.draw(st.sampled_from(_paths(obj)))
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    action = data.draw(st.sampled_from(["replace", "delete", "add"]))
    if not path:
        obj = data.draw(json_values)
    elif action == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    elif action == "add" and isinstance(parent, dict):
        parent[data.draw(st.text(max_size=12))] = data.draw(json_values)
    else:
        parent[path[-1]] = data.draw(json_values)
    run_one(target, json.dumps(obj).encode())


@pytest.mark.parametrize("target", JSON_TARGETS, ids=_ids(JSON_TARGETS))
@FUZZ
@given(seed=st.integers(min_value=0, max_value=2**32))
def test_structural_mutations(target: DecoderTarget, seed: int) -> None:
    """The atheris harness's own mutations (fuzz/mutations.py), driven by hypothesis: deep
    nesting, 5,000-digit integers, wrong types, duplicated subtrees."""
    rng = random.Random(seed)
    for original in target.seeds():
        mutated = mutate_bytes(original, rng, 1 << 16)
        if mutated is not None:
            run_one(target, mutated)


@pytest.mark.parametrize("target", list(TARGETS.values()), ids=_ids(list(TARGETS.values())))
def test_the_seeds_decode(target: DecoderTarget) -> None:
    """The valid messages the fuzzers start from are accepted (else they test nothing)."""
    assert all(run_one(target, seed) for seed in target.seeds())
