"""`lokal.engine.batching.common_prefix`: the prompt cache's (and the draft model's) reuse count."""

from __future__ import annotations

import pytest

from lokal.engine.batching import common_prefix


@pytest.mark.parametrize(
    ("a", "b", "limit", "expected"),
    [
        ([1, 2, 3, 4], [1, 2, 9], 10, 2),  # first difference at index 2
        ([1, 2, 3], [1, 2, 3, 4], 10, 3),  # the shorter list ends the run
        ([1, 2, 3], [1, 2, 3], 2, 2),  # the last prompt token is always evaluated again: limit len - 1
        ([5], [6], 10, 0),
        ([], [1], 10, 0),
        ([1], [1], -1, 0),  # an empty prompt's limit
    ],
)
def test_common_prefix(a: list[int], b: list[int], limit: int, expected: int) -> None:
    assert common_prefix(a, b, limit=limit) == expected
