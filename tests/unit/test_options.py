import pytest

from lokal.engine.options import Options
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
    ],
)
def test_bad_values_name_the_option(options, fragment):
    with pytest.raises(InvalidOptions, match=fragment):
        Options.from_mapping(options)


def test_stop_accepts_a_single_string_and_integral_floats_become_ints():
    o = Options.from_mapping({"stop": "END", "num_predict": 10.0})
    assert o.stop == ("END",)
    assert o.num_predict == 10
