"""Connectors settings: WARDEN_CONNECTORS_CLIENT_METADATA_URL (Warden's client ID metadata
document, CIMD) and WARDEN_CONNECTORS_STATE_TTL_S (how long a consent link is valid)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from warden_connectors.settings import Settings

URL = "https://warden.example.com/oauth/client-metadata.json"


def _settings(**kw: object) -> Settings:
    return Settings(
        crypto={"keys": "k1:" + "A" * 43 + "="},  # type: ignore[arg-type]
        postgres={"dsn": "postgresql://u@127.0.0.1/db"},  # type: ignore[arg-type]
        admin_token="adm-0123456789abcdefghij",
        **kw,  # type: ignore[arg-type]
    )


def test_the_document_names_the_url_as_client_id_and_the_callback_as_redirect_uri() -> None:
    s = _settings(client_metadata_url=URL, callback_base_url="https://warden.example.com")
    doc = s.client_metadata()
    assert doc is not None and doc.client_id == URL
    assert doc.redirect_uris == ("https://warden.example.com/connect/callback",)
    assert doc.token_endpoint_auth_method == "none"
    assert _settings().client_metadata() is None


@pytest.mark.parametrize("bad", ["http://warden.example.com/cimd.json", "https://warden.example.com/", "https://a/b#c"])
def test_a_url_the_draft_forbids_is_refused_at_start(bad: str) -> None:
    with pytest.raises(ValidationError):
        _settings(client_metadata_url=bad)


def test_the_consent_link_lifetime_is_a_bounded_setting() -> None:
    assert _settings().state_ttl_s == 600
    assert _settings(state_ttl_s=1800).state_ttl_s == 1800
    for bad in (30, 7200):
        with pytest.raises(ValidationError):
            _settings(state_ttl_s=bad)
