"""/api/conversations through the real server: create, list, search, rename, replace
messages, export as JSON and Markdown, delete; bad bodies are 400 and unknown ids 404;
with keys on, each key sees only its own conversations."""

from __future__ import annotations

import httpx

from hearth.serve.conversations import create_conversation, list_conversations


def test_crud_search_export(served) -> None:  # type: ignore[no-untyped-def]
    api = f"{served.main.url}/api/conversations"
    body = {
        "title": "Lighthouses",
        "model": "smollm2:135m",
        "system": "Be brief.",
        "params": {"temperature": 0.2, "json": False},
        "messages": [
            {"role": "user", "content": "What is a fresnel lens?"},
            {"role": "assistant", "content": "A lens in **rings**.", "stats": {"ttft_s": 0.1}},
        ],
    }
    made = httpx.post(api, json=body)
    assert made.status_code == 201
    cid = made.json()["id"]
    assert cid in [c["id"] for c in httpx.get(api).json()["conversations"]]
    found = httpx.get(api, params={"q": "FRESNEL"}).json()["conversations"]
    assert [c["id"] for c in found] == [cid]
    assert httpx.get(api, params={"q": "100%_"}).json()["conversations"] == []
    renamed = httpx.put(f"{api}/{cid}", json={"title": "Lenses"}).json()
    assert renamed["title"] == "Lenses" and len(renamed["messages"]) == 2  # messages kept
    markdown = httpx.get(f"{api}/{cid}/export", params={"format": "md"})
    assert markdown.headers["content-disposition"].endswith(f'conversation-{cid}.md"')
    assert "# Lenses" in markdown.text and "## Assistant" in markdown.text
    exported = httpx.get(f"{api}/{cid}/export").json()
    assert exported["messages"][1]["stats"] == {"ttft_s": 0.1}
    bad = httpx.put(f"{api}/{cid}", json={"messages": [{"role": "wizard", "content": "x"}]})
    assert bad.status_code == 400  # the server maps validation errors to 400
    assert httpx.delete(f"{api}/{cid}").status_code == 204
    assert httpx.get(f"{api}/{cid}").status_code == 404
    assert httpx.delete(f"{api}/{cid}").status_code == 404


def test_each_key_sees_its_own(served) -> None:  # type: ignore[no-untyped-def]
    settings = served.keyed_settings
    mine = create_conversation(settings, "ci", title="mine")
    create_conversation(settings, "other", title="theirs")
    assert [c.title for c in list_conversations(settings, "ci")] == ["mine"]
    api = f"{served.keyed.url}/api/conversations"
    assert httpx.get(api).status_code == 401
    assert httpx.get(f"{api}/{mine.id}").status_code == 401
