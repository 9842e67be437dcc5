"""One rule for secret names: the settings printout, the JSON log and the evidence bundle hide the same names."""

import orjson
import pytest

from libervia.jsonlog import render_line
from libervia.ops.evidence import redacted_environment
from libervia.secret_names import SECRET_NAME_WORDS
from libervia.settings import mask_secrets


@pytest.mark.parametrize("word", SECRET_NAME_WORDS)
def test_every_output_hides_a_name_with_a_secret_word(word: str) -> None:
    name = f"upstream_{word}_value"
    secret = "s3cr3t-value-that-must-not-show"

    assert mask_secrets({name: secret}) == {name: "***"}

    line = orjson.loads(render_line("2026-01-01T00:00:00.000Z", "info", "hello", {name: secret}))
    assert line[name] == "[REDACTED]"

    environment = redacted_environment({name.upper(): secret, "PATH": "/usr/bin"})
    assert secret not in environment
    assert f"{name.upper()}=<redacted>" in environment
    assert "PATH=/usr/bin" in environment


def test_ordinary_names_are_shown_everywhere() -> None:
    assert mask_secrets({"port": 3000}) == {"port": 3000}
    assert orjson.loads(render_line("t", "info", "m", {"tenantId": "acme"}))["tenantId"] == "acme"
    assert redacted_environment({"BASE_DIR": "/data"}) == "BASE_DIR=/data\n"


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_a_bearer_credential_is_hidden_whatever_the_case_of_its_scheme(scheme: str) -> None:
    """The scheme is case-insensitive; the quick pre-check looked only for "earer" and "EARER"."""
    line = orjson.loads(render_line("2026-01-01T00:00:00.000Z", "info", f"Authorization: {scheme} tok3n-s3cr3t", {}))
    assert "tok3n-s3cr3t" not in line["msg"]
