"""Property-based tests of config parsing and the --set syntax."""

import json
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmivae.config import FIELDS, Config, from_dict, parse_assignment
from vmivae.errors import ConfigError
from vmivae.presets import make_config

KEYS = sorted(FIELDS)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.text(max_size=60))
def test_any_text_parses_or_is_a_config_error(text):
    try:
        key, _ = parse_assignment(text)
    except ConfigError:
        return
    assert key in FIELDS


@SETTINGS
@given(st.sampled_from(KEYS), st.text(alphabet=string.printable, max_size=20))
def test_any_value_for_any_key_gives_a_config_or_a_config_error(key, raw):
    try:
        config = make_config("paper-joint", "smoke", [f"{key}={raw}"])
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert isinstance(config, Config)


@SETTINGS
@given(st.integers(min_value=2, max_value=10_000), st.floats(min_value=0, max_value=10, allow_nan=False),
       st.lists(st.integers(min_value=0, max_value=15), unique=True, max_size=4), st.integers(min_value=0, max_value=2**31))
def test_valid_values_round_trip_through_set_and_json(batch_size, lam, dims, seed):
    config = make_config("paper-joint", "smoke", [f"batch_size={batch_size}", f"lambda_cat={lam!r}", f"mi_dims={dims}", f"seed={seed}",
                                                  f"lambda_cont={0.0005 if dims else 0.0}"])
    assert (config.batch_size, config.lambda_cat, config.mi_dims, config.seed) == (batch_size, lam, tuple(dims), seed)
    again = from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.hash() == config.hash()


@SETTINGS
@given(st.dictionaries(st.text(min_size=1, max_size=12), st.integers(), max_size=3))
def test_unknown_keys_are_always_refused_with_the_valid_list(extra):
    unknown = {k: v for k, v in extra.items() if k not in FIELDS}
    if not unknown:
        return
    try:
        from_dict({**Config().to_dict(), **unknown})
    except ConfigError as exc:
        assert "unknown config key" in str(exc) and "batch_size" in str(exc)
    else:
        raise AssertionError("an unknown key was accepted")
