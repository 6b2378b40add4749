"""GET /search/messages: words, phrases, prefixes, ranking, snippets, filters, paging, access,
encrypted channels, odd input, the rate limit and the statement timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from tests.utils.auth import ApiUser, api_user
from voicechat.api import create_app
from voicechat.settings import Settings


@pytest.fixture
def settings(
    settings_factory: Callable[..., Settings], database_url: str, clean_valkey: str
) -> Settings:
    """Room for the many searches a test makes; test_rate_limit sets its own."""
    return settings_factory(
        database_url=database_url, valkey_url=clean_valkey, rate_limit_search="10000/minute"
    )


@pytest.fixture
async def general(admin: ApiUser) -> str:
    return str((await admin.channel(name="general"))["id"])


async def search(user: ApiUser, q: str, **params: Any) -> dict[str, Any]:
    response = await user.get("/search/messages", params={"q": q, **params})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def contents(body: dict[str, Any]) -> list[str]:
    return [r["message"]["content"] for r in body["results"]]


async def test_results_are_history_messages_with_a_highlight(
    general: str, alice: ApiUser, bob: ApiUser
) -> None:
    sent = await alice.send(general, "Who joins the voice channel tonight?")
    await alice.send(general, "nothing to see here")
    body = await search(bob, "voice")
    assert body["has_more"] is False
    assert body["next_cursor"] is None
    [result] = body["results"]
    page = (await bob.get(f"/channels/{general}/messages")).json()["messages"]
    assert result["message"] == next(m for m in page if m["id"] == sent["id"])
    assert result["channel_id"] == general
    assert result["message"]["content"] == "Who joins the voice channel tonight?"
    assert result["highlight"] == "Who joins the <mark>voice</mark> channel tonight?"
    assert result["rank"] > 0


async def test_query_syntax(general: str, alice: ApiUser) -> None:
    for text in ("voice chat is up", "chat about voice", "voice only", "Café crème", "spam voice"):
        await alice.send(general, text)
    assert set(contents(await search(alice, '"voice chat"'))) == {"voice chat is up"}
    assert set(contents(await search(alice, "voice -spam"))) == {
        "voice chat is up",
        "chat about voice",
        "voice only",
    }
    assert set(contents(await search(alice, "crème or only"))) == {"Café crème", "voice only"}
    # Accents do not matter either way.
    assert contents(await search(alice, "café")) == ["Café crème"]
    assert contents(await search(alice, "CAFÉ")) == ["Café crème"]
    # The last word as typed matches as a prefix; a short one, and earlier words, match whole.
    assert len((await search(alice, "voic"))["results"]) == 4
    assert contents(await search(alice, "about voic")) == ["chat about voice"]
    assert (await search(alice, "voic about"))["results"] == []
    assert (await search(alice, "vo"))["results"] == []
    assert (await search(alice, "voic "))["results"] == []
    assert contents(await search(alice, "only voi")) == ["voice only"]


async def test_ranked_best_first_then_newest(general: str, alice: ApiUser) -> None:
    older = await alice.send(general, "raid raid raid tonight")
    weak_old = await alice.send(general, "a raid, maybe, some other day, who knows when")
    weak_new = await alice.send(general, "a raid, maybe, some other day, who knows when")
    ids = [r["message"]["id"] for r in (await search(alice, "raid"))["results"]]
    assert ids == [older["id"], weak_new["id"], weak_old["id"]]


async def test_highlight_escapes_the_message_s_own_markup(general: str, alice: ApiUser) -> None:
    text = "<mark>fake</mark> <b>bold</b> & the real word, 1 < 2"
    await alice.send(general, text)
    [result] = (await search(alice, "real"))["results"]
    # PostgreSQL's parser reads `<b>` as a tag, which snippets leave out; any other `<`, `&`
    # is escaped, so the only markup in a highlight is its own.
    assert result["highlight"] == " fake   bold  &amp; the <mark>real</mark> word, 1 &lt; 2"
    assert result["message"]["content"] == text


async def test_filters_by_channel_author_and_time(
    admin: ApiUser, general: str, alice: ApiUser, bob: ApiUser
) -> None:
    other = str((await admin.channel(name="other"))["id"])
    first = await alice.send(general, "match one")
    second = await bob.send(general, "match two")
    third = await alice.send(other, "match three")
    everything = await search(alice, "match")
    assert len(everything["results"]) == 3
    assert contents(await search(alice, "match", channel_id=other)) == ["match three"]
    assert set(contents(await search(alice, "match", author_id=alice.id))) == {
        "match one",
        "match three",
    }
    assert set(contents(await search(alice, "match", before=second["id"]))) == {"match one"}
    assert set(contents(await search(alice, "match", after=second["id"]))) == {"match three"}
    window = await search(alice, "match", after=first["created_at"], before=third["created_at"])
    assert contents(window) == ["match two"]


async def test_pages_follow_the_cursor(general: str, alice: ApiUser) -> None:
    sent = [(await alice.send(general, f"page word {i}"))["id"] for i in range(5)]
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        body = await search(alice, "word", **params)
        seen += [r["message"]["id"] for r in body["results"]]
        if not body["has_more"]:
            assert body["next_cursor"] is None
            break
        params["cursor"] = body["next_cursor"]
    # Equal ranks: newest first, each exactly once.
    assert seen == sent[::-1]
    first = await search(alice, "word", limit=2)
    other_query = await alice.get(
        "/search/messages", params={"q": "page", "cursor": first["next_cursor"]}
    )
    assert other_query.status_code == 422
    assert other_query.json()["error"]["code"] == "invalid_search_cursor"
    garbage = await alice.get("/search/messages", params={"q": "word", "cursor": "%%%"})
    assert garbage.json()["error"]["code"] == "invalid_search_cursor"


async def test_private_channel_only_for_members_and_not_after_removal(
    admin: ApiUser, alice: ApiUser, bob: ApiUser
) -> None:
    secret = str((await admin.channel(name="secret", private=True))["id"])
    assert (await admin.put(f"/channels/{secret}/members/{alice.id}")).status_code == 204
    await alice.send(secret, "the hidden plan")
    assert contents(await search(alice, "hidden")) == ["the hidden plan"]
    assert (await search(bob, "hidden"))["results"] == []
    refused = await bob.get("/search/messages", params={"q": "hidden", "channel_id": secret})
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "channel_not_found"
    assert (await admin.delete(f"/channels/{secret}/members/{alice.id}")).status_code == 204
    assert (await search(alice, "hidden"))["results"] == []
    gone = await alice.get("/search/messages", params={"q": "hidden", "channel_id": secret})
    assert gone.status_code == 404


async def test_encrypted_channels_are_never_searched(
    admin: ApiUser, alice: ApiUser, bob: ApiUser
) -> None:
    vault = str((await admin.channel(name="vault", encrypted=True))["id"])
    ciphertext = {
        "algorithm": "m.megolm.v1.aes-sha2",
        "ciphertext": "needle needle needle",
        "sender_key": "needle",
        "session_id": "needle",
        "device_id": "NEEDLE",
    }
    assert (await alice.post(f"/channels/{vault}/messages", json=ciphertext)).status_code == 201
    dm = (await alice.post("/dms", json={"user_ids": [bob.id]})).json()
    sent = await alice.post(f"/channels/{dm['id']}/messages", json=ciphertext)
    assert sent.status_code == 201, sent.text
    for user in (alice, bob, admin):
        assert (await search(user, "needle"))["results"] == []
    refused = await alice.get("/search/messages", params={"q": "needle", "channel_id": vault})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "channel_not_searchable"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"q": ""}, "q"),
        ({"q": "   \t "}, "q"),
        ({"q": "x" * 201}, "q"),
        ({}, "q"),
        ({"q": "a", "limit": 0}, "limit"),
        ({"q": "a", "limit": 26}, "limit"),
        ({"q": "a", "before": "yesterday"}, "before"),
        ({"q": "a", "channel_id": "nope"}, "channel_id"),
    ],
)
async def test_refuses_bad_parameters(alice: ApiUser, params: dict[str, Any], field: str) -> None:
    response = await alice.get("/search/messages", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"].startswith(field)


ODD_QUERIES = [
    "'",
    "''",
    '"',
    '"""',
    "&|!():*",
    "!!!",
    "a & b | c",
    "\\",
    "\\\\'\\",
    "a\\b'c",
    "foo:*",
    "foo:* & bar",
    "(",
    "-",
    "-word",
    "- -",
    "or",
    "or or or",
    "-or",
    '"unclosed phrase',
    "<->",
    "a <-> b <2> c",
    "漢字検索",
    "ëüñ Łódź",
    "🎉🎉",
    "\u200b\u200b",
    "x" * 200,
    "a " * 100,
    "l'été",
    "foo-ba",
    "vcprefix0123456789abcdef",
]


async def test_odd_queries_answer_200(general: str, alice: ApiUser) -> None:
    await alice.send(general, "foo-bar l'été a b c 漢字検索 word or other \\ ' \"")
    for q in ODD_QUERIES:
        response = await alice.get("/search/messages", params={"q": q})
        assert response.status_code == 200, (q, response.text)
        assert isinstance(response.json()["results"], list)
    assert contents(await search(alice, "foo-ba")) == [
        "foo-bar l'été a b c 漢字検索 word or other \\ ' \""
    ]
    assert (await search(alice, "&|!():*"))["results"] == []
    assert (await search(alice, "-word"))["results"] == []


async def test_needs_a_signed_in_user(client: httpx.AsyncClient) -> None:
    response = await client.get("/search/messages", params={"q": "x"})
    assert response.status_code == 401


@pytest.fixture
async def limited_client(
    settings_factory: Callable[..., Settings], database_url: str, clean_valkey: str
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        settings_factory(
            database_url=database_url,
            valkey_url=clean_valkey,
            rate_limit_search="3/minute",
            search_timeout=0.3,
        )
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def test_rate_limited_per_user(limited_client: httpx.AsyncClient) -> None:
    carol = await api_user(limited_client, "carol")
    dave = await api_user(limited_client, "dave")
    for _ in range(3):
        assert (await carol.get("/search/messages", params={"q": "x"})).status_code == 200
    refused = await carol.get("/search/messages", params={"q": "x"})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    assert (await dave.get("/search/messages", params={"q": "x"})).status_code == 200


async def test_a_search_past_its_timeout_is_cancelled(
    limited_client: httpx.AsyncClient, database_url: str
) -> None:
    erin = await api_user(limited_client, "erin")
    # Another session holds the table: the search waits, and PostgreSQL cancels it at 0.3 s.
    blocker = await asyncpg.connect(database_url)
    try:
        async with blocker.transaction():
            await blocker.execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
            response = await erin.get("/search/messages", params={"q": "anything"})
    finally:
        await blocker.close()
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "search_timeout"
    assert response.headers["Retry-After"]
    # Nothing is left over: the next search works.
    await asyncio.sleep(0)
    assert (await erin.get("/search/messages", params={"q": "anything"})).status_code == 200
