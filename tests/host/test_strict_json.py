"""Request bodies are parsed strictly; every refusal names the input, never the interpreter."""

import pytest

from libervia.strict_json import AmbiguousJsonError, loads_strict


def test_an_integer_beyond_the_digit_limit_is_refused_in_our_words() -> None:
    with pytest.raises(AmbiguousJsonError) as caught:
        loads_strict(b'{"n": ' + b"9" * 5000 + b"}")
    assert "sys.set_int_max_str_digits" not in str(caught.value)
    assert "too many digits" in str(caught.value)
