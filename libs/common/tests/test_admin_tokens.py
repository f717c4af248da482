"""Named admin tokens (ADMIN_TOKENS): parsed once at start-up, refused with a clear reason."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from warden_common.web import parse_admin_tokens

SINGLE = SecretStr("s" * 20)


def test_the_single_token_is_the_admin_named_admin_and_named_ones_add_to_it() -> None:
    got = parse_admin_tokens(SINGLE, SecretStr(" alice:" + "a" * 16 + ", bob@corp:" + "b" * 20))
    assert got == {"admin": b"s" * 20, "alice": b"a" * 16, "bob@corp": b"b" * 20}
    assert parse_admin_tokens(SINGLE, None) == {"admin": b"s" * 20}


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("alice" + "a" * 16, "name:token"),
        ("al ice:" + "a" * 16, "name:token"),
        ("alice:short", "shorter than 16"),
        ("admin:" + "a" * 16, "given twice"),
        ("alice:" + "a" * 16 + ",alice:" + "b" * 16, "given twice"),
        ("alice:" + "s" * 20, "also another admin's"),
    ],
)
def test_malformed_named_tokens_are_refused_without_echoing_a_token(value: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as e:
        parse_admin_tokens(SINGLE, SecretStr(value))
    assert "a" * 16 not in str(e.value) and "s" * 20 not in str(e.value)
