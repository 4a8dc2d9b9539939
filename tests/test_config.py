"""Bit widths and QuantConfig validate when built, naming the field, the value and what is allowed."""

import pytest

from quantgpt import BitWidths, ConfigError, QuantConfig


def test_parse_round_trips():
    bits = BitWidths.parse("2-4-8")
    assert (bits.weight, bits.embedding, bits.activation) == (2, 4, 8)
    assert str(bits) == "2-4-8"


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("2-2-9", "bits.activation=9"),
        ("1-2-8", "bits.weight=1"),
        ("2-x-8", "bits.embedding='x'"),
        ("2-2", "write W-E-A"),
        ("2-2-8-8", "write W-E-A"),
    ],
)
def test_bad_specs_name_the_field_and_what_is_allowed(spec, fragment):
    with pytest.raises(ConfigError) as error:
        BitWidths.parse(spec)
    assert fragment in str(error.value)
    assert "2" in str(error.value) and "8" in str(error.value)


def test_quant_config_validates_method_and_round_trips_through_a_dict():
    with pytest.raises(ConfigError, match="method='gptq'.*quantgpt, pact, lsq, laq"):
        QuantConfig(method="gptq")
    config = QuantConfig(method="lsq", bits="4-4-8", quantize_values=False)
    assert QuantConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown keys"):
        QuantConfig.from_dict({**config.to_dict(), "surprise": 1})
