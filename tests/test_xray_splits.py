"""split_by_patient: whole patients only, seeded, sizes near the requested fractions."""

from __future__ import annotations

import numpy as np
import pytest

from medgan_core.data.splits import split_by_patient


def _ids(counts: dict[str, int]) -> list[str]:
    return [pid for pid, n in counts.items() for _ in range(n)]


def test_no_patient_is_split_and_every_record_is_assigned_once() -> None:
    rng = np.random.default_rng(0)
    ids = _ids({f"p{i}": int(rng.integers(1, 6)) for i in range(100)})

    groups = split_by_patient(ids, fractions=(0.7, 0.2, 0.1), seed=3)

    owners = [{ids[i] for i in g} for g in groups]
    for a in range(3):
        for b in range(a + 1, 3):
            assert not owners[a] & owners[b]
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(ids)))


def test_group_sizes_follow_the_fractions_within_one_patient() -> None:
    ids = _ids({f"p{i}": 1 + i % 3 for i in range(300)})  # 600 records, patients of 1-3

    sizes = [len(g) for g in split_by_patient(ids, fractions=(0.8, 0.2), seed=0)]

    # Greedy fill stops each group within the largest patient (3 records) of its target.
    assert abs(sizes[0] - 480) <= 3 and abs(sizes[1] - 120) <= 3


def test_one_record_per_patient_gives_equal_sites() -> None:
    ids = [f"rec{i}" for i in range(9)]  # ECG: one record is one patient

    groups = split_by_patient(ids, num_sites=3, seed=1)

    assert [len(g) for g in groups] == [3, 3, 3]


def test_same_seed_same_split_regardless_of_input_order_and_seed_matters() -> None:
    ids = _ids({f"p{i}": 2 for i in range(40)})
    reordered = ids[::-1]

    first = split_by_patient(ids, num_sites=2, seed=5)
    again = split_by_patient(ids, num_sites=2, seed=5)
    flipped = split_by_patient(reordered, num_sites=2, seed=5)
    other = split_by_patient(ids, num_sites=2, seed=6)

    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    as_sets = [{ids[i] for i in g} for g in first]
    assert as_sets == [{reordered[i] for i in g} for g in flipped]
    assert as_sets != [{ids[i] for i in g} for g in other]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fractions": (0.5, 0.5), "num_sites": 2}, "exactly one"),
        ({}, "exactly one"),
        ({"fractions": (0.6, 0.6)}, "sum to 1"),
        ({"fractions": (1.0, 0.0)}, "positive"),
        ({"num_sites": 0}, ">= 1"),
        ({"num_sites": 4}, "cannot fill"),
    ],
)
def test_invalid_arguments_are_rejected(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        split_by_patient(["a", "a", "b", "c"], seed=0, **kwargs)


def test_group_that_gets_no_patient_is_an_error() -> None:
    # The 1% group's deficit (under one record) is never the largest while others need more.
    ids = ["big"] * 50 + ["mid"] * 40 + ["small"]

    with pytest.raises(ValueError, match="received no patient"):
        split_by_patient(ids, fractions=(0.5, 0.49, 0.01), seed=0)
