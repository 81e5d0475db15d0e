"""Construction rules of MoltCitiesClient: key sources, URL safety, arguments, reprs."""

from __future__ import annotations

import pickle

import pytest
from pydantic import SecretStr, ValidationError

from langchain_moltcities import ClientSettings, InvalidArgumentError, MoltCitiesClient
from langchain_moltcities.redact import redact

KEY = "mc_" + "ab12" * 16


@pytest.mark.parametrize(
    "url", ["http://moltcities.example.org", "ws://10.0.0.5:8787", "http://192.168.1.2"]
)
def test_non_loopback_clear_text_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        MoltCitiesClient(api_key=KEY, base_url=url)
    message = str(err.value)
    assert "clear text" in message and "allow_insecure=True" in message
    assert KEY not in message


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8787", "http://localhost:1", "ws://[::1]:9", "https://moltcities.org"]
)
def test_loopback_and_tls_urls_are_accepted(url: str) -> None:
    client = MoltCitiesClient(api_key=KEY, base_url=url)
    assert client.status().started is False


def test_insecure_opt_in_allows_clear_text() -> None:
    client = MoltCitiesClient(api_key=KEY, base_url="http://10.0.0.5:8787", allow_insecure=True)
    assert client.status().base_url == "http://10.0.0.5:8787"


@pytest.mark.parametrize("url", ["ftp://x.org", "moltcities.org", ""])
def test_unusable_urls_get_a_clear_error(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOLTCITIES_BASE_URL", "ftp://also-bad")
    with pytest.raises(InvalidArgumentError, match="not a usable URL"):
        MoltCitiesClient(api_key=KEY, base_url=url or None)


def test_key_and_url_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOLTCITIES_API_KEY", KEY)
    monkeypatch.setenv("MOLTCITIES_BASE_URL", "http://127.0.0.1:9999")
    client = MoltCitiesClient()
    assert client.status().base_url == "http://127.0.0.1:9999"


def test_default_base_url_is_the_public_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOLTCITIES_BASE_URL", raising=False)
    assert MoltCitiesClient(api_key=KEY).status().base_url == "https://moltcities.org"


def test_missing_key_says_how_to_provide_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOLTCITIES_API_KEY", raising=False)
    with pytest.raises(InvalidArgumentError, match="MOLTCITIES_API_KEY"):
        MoltCitiesClient(base_url="https://moltcities.org")


def test_secretstr_key_is_accepted() -> None:
    client = MoltCitiesClient(api_key=SecretStr(KEY), base_url="https://moltcities.org")
    assert KEY not in repr(client)


def test_repr_str_and_status_never_show_the_key() -> None:
    client = MoltCitiesClient(api_key=KEY, base_url="https://moltcities.org")
    for text in (repr(client), str(client), client.status().model_dump_json(), repr(vars(client))):
        assert KEY not in text
    with pytest.raises(TypeError):
        pickle.dumps(client)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        (dict(channels=("personal", "lobby")), "unknown channel"),
        (dict(transport="carrier-pigeon"), "transport"),
        (dict(buffer_size=0), "buffer_size"),
    ],
)
def test_bad_arguments_are_explained(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidArgumentError, match=fragment):
        MoltCitiesClient(api_key=KEY, base_url="https://moltcities.org", **kwargs)  # type: ignore[arg-type]


def test_ping_interval_can_never_exceed_four_minutes() -> None:
    assert ClientSettings().ping_interval == 120
    assert ClientSettings(ping_interval=240).ping_interval == 240
    with pytest.raises(ValidationError, match="at most 240"):
        ClientSettings(ping_interval=241)


def test_settings_reject_unknown_knobs() -> None:
    with pytest.raises(ValidationError):
        ClientSettings(ping_intervall=5)  # type: ignore[call-arg]


def test_redact_covers_query_tokens_bearer_headers_and_bare_keys() -> None:
    text = f"wss://h/api?token={KEY}&channel=x Authorization: Bearer {KEY} raw {KEY}"
    cleaned = redact(text)
    assert KEY not in cleaned and "channel=x" in cleaned
    assert redact("token=s3cret&x=1") == "token=***&x=1"
    assert redact("hello custom", ["custom"]) == "hello ***"


def test_data_timeout_must_outlast_a_ping() -> None:
    assert ClientSettings(ping_interval=10, data_timeout=15).effective_data_timeout == 15
    assert ClientSettings(ping_interval=10, pong_timeout=5).effective_data_timeout == 15
    with pytest.raises(ValidationError, match="longer than ping_interval"):
        ClientSettings(ping_interval=10, data_timeout=10)


def test_read_filters_with_unknown_names_are_explained() -> None:
    client = MoltCitiesClient(api_key=KEY, base_url="https://moltcities.org")
    with pytest.raises(InvalidArgumentError, match=r"valid ones are .*inbox\.message"):
        client.read_notifications(event_types=["inbox"])
    with pytest.raises(InvalidArgumentError, match=r"valid ones are .*'chat', 'presence'"):
        client.read_town_square(kinds="chats")
    with pytest.raises(InvalidArgumentError, match="limit"):
        client.read_notifications(limit=-1)
    # Known names (documented and live) are fine on a client that never started.
    assert client.read_notifications(event_types=["mention.chat", "mention"]).items == []
    assert client.read_town_square(kinds=["chat", "presence"]).remaining == 0
