import pytest

from lokal.engine.options import PENALTY_BOUND, Options
from lokal.errors import InvalidOptions


def test_defaults_are_ollamas():
    o = Options.from_mapping(None)
    assert (o.temperature, o.top_k, o.top_p, o.min_p, o.repeat_penalty, o.seed, o.num_predict) == (
        0.8,
        40,
        0.9,
        0.0,
        1.0,
        -1,
        -1,
    )


def test_request_options_override_model_defaults_and_unknown_keys_are_ignored():
    o = Options.from_mapping({"temperature": 0, "num_thread": 8, "mirostat": 1}, {"temperature": 0.6, "top_k": 5})
    assert o.temperature == 0.0
    assert o.top_k == 5
    assert o.greedy


def test_none_values_do_not_override():
    assert Options.from_mapping({"temperature": None}, {"temperature": 0.3}).temperature == 0.3


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"temperature": "hot"}, "'temperature' must be a number"),
        ({"top_k": 1.5}, "'top_k' must be an integer"),
        ({"seed": True}, "'seed' must be a number"),
        ({"num_predict": -5}, "num_predict"),
        ({"top_p": 1.5}, "between 0 and 1"),
        ({"temperature": -1}, ">= 0"),
        ({"stop": [1, 2]}, "list of strings"),
        ({"stop": [""]}, "empty strings"),
        ({"num_ctx": 4}, "at least 16"),
        # NaN passes every comparison it takes part in; infinities are no sampling setting either.
        ({"temperature": float("nan")}, "'temperature' must be a finite number, got nan"),
        ({"repeat_penalty": float("inf")}, "'repeat_penalty' must be a finite number"),
        ({"presence_penalty": float("-inf")}, "'presence_penalty' must be a finite number"),
        ({"frequency_penalty": float("nan")}, "'frequency_penalty' must be a finite number"),
        ({"top_p": float("nan")}, "'top_p' must be a finite number"),
        ({"temperature": 10**400}, r"'temperature' is out of range \(a 1329-bit integer\)"),
        # These reach llama.cpp as 32-bit ints, where ctypes would silently truncate them.
        ({"top_k": 2**40}, "'top_k' must be at most 2147483647, got 1099511627776"),
        ({"repeat_last_n": 2**31}, "'repeat_last_n' must be at most 2147483647"),
        ({"num_ctx": 10**30}, "'num_ctx' must be at most 2147483647"),
        ({"top_k": 10**100}, "a 333-bit integer"),
    ],
)
def test_bad_values_name_the_option(options, fragment):
    with pytest.raises(InvalidOptions, match=fragment):
        Options.from_mapping(options)


def test_stop_accepts_a_single_string_and_integral_floats_become_ints():
    o = Options.from_mapping({"stop": "END", "num_predict": 10.0})
    assert o.stop == ("END",)
    assert o.num_predict == 10


def test_huge_values_inside_the_ranges_are_accepted():
    o = Options.from_mapping({"seed": 2**70, "num_predict": 10**12, "top_k": 2**31 - 1, "temperature": 1e308})
    assert (o.seed, o.num_predict, o.top_k, o.temperature) == (2**70, 10**12, 2**31 - 1, 1e308)


def test_penalties_reach_a_sampler_bounded_so_float32_never_overflows() -> None:
    # float32 overflows past 3.4e38: an infinite penalty turned grammar-masked logits into NaN (an abort)
    o = Options.from_mapping({"presence_penalty": -1e300, "frequency_penalty": 1e300, "repeat_penalty": 0})
    assert o.penalties() == (1 / PENALTY_BOUND, PENALTY_BOUND, -PENALTY_BOUND)
    assert Options.from_mapping({"repeat_penalty": 1.1, "presence_penalty": 0.5}).penalties() == (1.1, 0.0, 0.5)
    assert Options.from_mapping({"repeat_penalty": 1e300}).penalties()[0] == PENALTY_BOUND
