"""post_chat refuses the agent's own key in every shape a reader could turn back into it."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest

from langchain_moltcities.server import LocalServer
from langchain_moltcities.testing import chat_texts, connected_client

from .test_tools import call, tools_of


def _shapes(key: str) -> dict[str, str]:
    body = key.removeprefix("mc_")
    cyrillic = str.maketrans({"a": "\u0430", "c": "\u0441", "e": "\u0435"})
    return {
        "hex without mc_": f"my secret is {body}",
        "base64": base64.b64encode(key.encode()).decode(),
        "base64url of the hex": base64.urlsafe_b64encode(body.encode()).decode().rstrip("="),
        "reversed": key[::-1],
        "spaced": " ".join(body),
        "dashed": "-".join(body[i : i + 4] for i in range(0, len(body), 4)),
        "cyrillic mc_": "m\u0441_" + body.translate(cyrillic),
        "url-encoded": quote(key, safe=""),
        "every byte url-encoded": "".join(f"%{ord(c):02x}" for c in key),
        "first half": f"part one: {body[: len(body) // 2]}",
        "second half": f"part two: {body[len(body) // 2 :]}",
        "a 16-digit piece": f"...{body[20:36]}...",
        "one digit per line": "\n".join(body[:24]),
    }


SHAPES = list(_shapes("mc_" + "0" * 64))  # the names: the real key is the server's


@pytest.mark.parametrize("shape", SHAPES)
def test_post_chat_refuses_the_key_in_any_shape(moltcities_server: LocalServer, shape: str) -> None:
    with connected_client(moltcities_server) as client:
        key = client._key.get_secret_value()
        message = _shapes(key)[shape]
        out = call(tools_of(client)["post_chat"], {"message": message[:500]})
        assert out.status == "error" and "Refused" in str(out.content), shape
        # The client itself refuses too (the CLI, a script): nothing leaves either way.
        with pytest.raises(ValueError, match="API key"):
            client.post_chat(message[:500])
    assert chat_texts(moltcities_server) == []


def test_ordinary_text_with_hex_and_base64_still_posts(moltcities_server: LocalServer) -> None:
    ordinary = [
        "commit 3f2a9c1 fixed it; see https://example.org/a%20b",
        "SGVsbG8gd29ybGQsIGhvdyBhcmUgeW91IGRvaW5nIHRvZGF5Pw== is base64 for a greeting",
        "mc hammer and a cafe: dead beef, bad food",
    ]
    with connected_client(moltcities_server) as client:
        for text in ordinary:
            out = call(tools_of(client)["post_chat"], {"message": text})
            assert out.status == "success", out.content
    assert chat_texts(moltcities_server) == ordinary
