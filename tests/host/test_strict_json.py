"""Request bodies are parsed strictly; every refusal names the input, never the interpreter."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libervia import strict_json
from libervia.strict_json import AmbiguousJsonError, loads_strict


def test_an_integer_beyond_the_digit_limit_is_refused_in_our_words() -> None:
    with pytest.raises(AmbiguousJsonError) as caught:
        loads_strict(b'{"n": ' + b"9" * 5000 + b"}")
    assert "sys.set_int_max_str_digits" not in str(caught.value)
    assert "too many digits" in str(caught.value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(alphabet=st.characters(codec="utf-8"), max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.text(alphabet=':ab\\"\u00e9', max_size=3), children, max_size=4),
    max_leaves=20)


def strict_only(raw: bytes) -> object:
    """What the strict parser alone makes of ``raw`` (the value, or the kind of refusal)."""
    try:
        return ("value", strict_json._DECODER.decode(raw.decode("utf-8")))
    except (ValueError, RecursionError) as exc:
        return ("refused", type(exc).__name__)


def outcome(raw: bytes) -> object:
    try:
        return ("value", loads_strict(raw))
    except ValueError as exc:
        return ("refused", type(exc).__name__)


@settings(max_examples=300, deadline=None)
@given(value=json_values, duplicate=st.booleans(), spaced=st.booleans(), ascii_only=st.booleans(),
       escaped_colons=st.booleans())
def test_the_fast_reading_agrees_with_the_strict_parser(value: object, duplicate: bool, spaced: bool,
                                                        ascii_only: bool, escaped_colons: bool) -> None:
    """orjson answers first when it certainly reads the body as the strict parser would: same value, and the
    same refusal for duplicate keys and integers past 64 bits, whatever the strings hold (colons, escaped or
    not, and \\u escapes, which Python clients send for every non-ASCII character)."""
    raw = json.dumps(value, ensure_ascii=ascii_only,
                     **({"indent": 1} if spaced else {"separators": (",", ":")})).encode()
    if escaped_colons:   # every colon inside a string, written as its escape
        raw = json.dumps(value, ensure_ascii=ascii_only, separators=(",", "\x00")).encode().replace(
            b":", b"\\u003a").replace(b"\x00", b":")
    if duplicate and raw.startswith(b"{") and raw != b"{}":
        raw = b'{"k:":1, "k:":2,' + raw[1:]
    assert outcome(raw) == strict_only(raw)


@pytest.mark.parametrize("raw", [b'{"a":1,"a":2}', b'{"a:b":1,"a:b":2}', b'{"x":{"a":1, "a" : 2}}',
                                 b'[9223372036854775808]', b'[-9223372036854775809]', b'[1e400]',
                                 b'{"a":"\\u003a","a":1}', b'{"a":1,"a":2,"x":"\\u003a"}',
                                 b'{"x":"\\u003A","a":1,"a":2}', b'{"\\u0061":1,"a":2}'])
def test_what_orjson_would_read_otherwise_is_still_refused(raw: bytes) -> None:
    with pytest.raises(AmbiguousJsonError):
        loads_strict(raw)
