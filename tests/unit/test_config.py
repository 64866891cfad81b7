from pathlib import Path

import pytest

from lokal.config import DEFAULT_NUM_PARALLEL, Settings, parse_duration
from lokal.errors import InvalidOptions


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (1.5, 1.5),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("3600", 3600.0),
        (0, 0.0),
        ("0", 0.0),
        (-1, None),
        ("-1m", None),
        (None, None),
        # Longer than Go's time.Duration holds (~292 years): forever, not an overflow later in /api/ps.
        (1e15, None),
        (1e308, None),
        (float("inf"), None),
        (float("-inf"), None),
        (10**400, None),
        ("Infinity", None),
        ("100000000h", None),
        ("9999999999999999999s", None),
        (9.2e9, 9.2e9),  # just under the limit: kept as it is
    ],
)
def test_parse_duration_follows_ollama(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "5 minutes", "m5", True, "1h30", float("nan"), "nan", "-NaN"])
def test_parse_duration_rejects_nonsense(value):
    with pytest.raises(InvalidOptions, match="invalid duration"):
        parse_duration(value)


def test_settings_prefer_lokal_vars_then_ollama_vars(tmp_path):
    env = {
        "LOKAL_HOME": str(tmp_path / "home"),
        "OLLAMA_MODELS": str(tmp_path / "om"),
        "OLLAMA_NUM_PARALLEL": "2",
        "LOKAL_NUM_PARALLEL": "8",
        "OLLAMA_KEEP_ALIVE": "10m",
        "OLLAMA_CONTEXT_LENGTH": "2048",
        "OLLAMA_HOST": "127.0.0.1:9999",
    }
    s = Settings.from_env(env)
    assert s.home == Path(tmp_path / "home")
    assert s.ollama_models == Path(tmp_path / "om")
    assert s.num_parallel == 8
    assert s.keep_alive == 600.0
    assert s.context_length == 2048
    assert s.host == "127.0.0.1:9999"


def test_settings_defaults():
    s = Settings.from_env({})
    assert s.num_parallel == DEFAULT_NUM_PARALLEL
    assert s.keep_alive == 300.0
    assert s.home == Path.home() / ".lokal"


def test_settings_reject_non_integers():
    with pytest.raises(InvalidOptions, match="must be an integer"):
        Settings.from_env({"OLLAMA_NUM_PARALLEL": "many"})
