"""check_token_ids: every id from outside is an int inside the vocabulary, or a 400 that names it."""

from __future__ import annotations

import numpy as np
import pytest

from lokal.engine.tokens import check_token_ids
from lokal.errors import InvalidOptions


def test_ids_inside_the_vocabulary_pass_as_ints():
    assert check_token_ids([0, 5, 99], 100) == [0, 5, 99]
    assert check_token_ids(np.array([1, 2], dtype=np.int64), 100) == [1, 2]
    assert check_token_ids((), 100) == []


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ([100], "token id 100 at position 0 is outside the model's vocabulary of 100 tokens (valid ids are 0 to 99)"),
        ([1, 2, -1], "token id -1 at position 2 is outside"),
        ([2**31], "token id 2147483648 at position 0"),
        ([2**40], "token id 1099511627776 at position 0"),  # ctypes would have made this token 0
        ([1, 2.0], "token ids must be integers, got 2.0 at position 1"),
        ([True], "token ids must be integers, got True at position 0"),
        (["7"], "token ids must be integers, got '7' at position 0"),
    ],
)
def test_bad_ids_are_named_with_their_position_and_the_vocabulary(ids, message):
    with pytest.raises(InvalidOptions) as info:
        check_token_ids(ids, 100, what="context")
    assert str(info.value).startswith(f"context: {message}")
