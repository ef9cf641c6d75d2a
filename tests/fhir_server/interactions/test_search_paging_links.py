"""Search and history paging links (http://hl7.org/fhir/R4/http.html#paging): ``self``, ``first``,
``previous``, ``next``; following ``previous`` gives back the earlier page."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from tests.fhir_server.interactions.conftest import (
    assert_outcome, create, cursor, follow, match_ids, patient, read_json, search, update,
)

FAMILIES = ["Adams", "Brown", "Clark", "Davis", "Evans", "Fox", "Green", "Hill"]


def links(bundle: dict) -> dict[str, str]:
    out = {link["relation"]: link["url"] for link in bundle["link"]}
    assert len(out) == len(bundle["link"]), bundle["link"]
    return out


def params(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query)


async def _families(client) -> list[str]:
    """Eight patients, one per family name, plus one without a name: ids in ``_sort=family`` order."""
    ids = [(await create(client, patient(f)))["id"] for f in FAMILIES]
    nameless = {k: v for k, v in patient().items() if k != "name"}
    return ids + [(await create(client, nameless))["id"]]


async def test_a_single_page_has_only_a_self_link(client):
    await create(client, patient("Adams"))

    bundle = await search(client, "Patient", {"family": "adams", "_count": "5"})

    assert list(links(bundle)) == ["self"]
    assert params(links(bundle)["self"]) == [("family", "adams"), ("_count", "5")]


async def test_first_middle_and_last_pages_link_as_they_should(client):
    ids = await _families(client)
    query = {"_sort": "family", "_count": "3"}

    pages = await follow(client, "/Patient", query)

    assert [match_ids(p) for p in pages] == [ids[0:3], ids[3:6], ids[6:9]]
    first, middle, last = (links(p) for p in pages)
    assert set(first) == {"self", "first", "next"}
    assert set(middle) == {"self", "first", "previous", "next"}
    assert set(last) == {"self", "first", "previous"}
    for page in (first, middle, last):
        assert params(page["first"]) == [("_sort", "family"), ("_count", "3")]  # the search, no cursor
        for rel in ("previous", "next"):
            if rel in page:
                assert params(page[rel])[:2] == [("_sort", "family"), ("_count", "3")]
    assert "_cursor" not in dict(params(first["self"]))
    assert middle["self"] == first["next"] and last["self"] == middle["next"]  # self: this very page


async def test_following_previous_links_returns_the_earlier_pages(client):
    ids = await _families(client)
    pages = await follow(client, "/Patient", {"_sort": "family", "_count": "3"})

    back_to_middle = await read_json(client, links(pages[2])["previous"])
    back_to_first = await read_json(client, links(back_to_middle)["previous"])

    assert match_ids(back_to_middle) == ids[3:6]
    assert match_ids(back_to_first) == ids[0:3]
    assert "previous" not in links(back_to_first)  # it is the first page
    assert match_ids(await read_json(client, links(back_to_first)["next"])) == ids[3:6]
    assert match_ids(await read_json(client, links(back_to_middle)["next"])) == ids[6:9]
    assert match_ids(await read_json(client, links(back_to_middle)["first"])) == ids[0:3]


async def test_previous_links_stay_put_while_other_clients_create(client):
    ids = await _families(client)
    pages = await follow(client, "/Patient", {"_sort": "family", "_count": "3"})
    for family in ("Aaron", "Cole", "Ford", "Zorn"):  # before, between and after the pages
        await create(client, patient(family))

    back = [pages[-1]]
    while "previous" in links(back[-1]):
        assert len(back) < 10
        back.append(await read_json(client, links(back[-1])["previous"]))
        await create(client, patient("Abbot"))  # lands before every page, meanwhile
    seen = [id for p in reversed(back) for id in match_ids(p)]

    assert len(seen) == len(set(seen))
    assert [id for id in seen if id in ids] == ids


async def test_previous_of_a_post_search_keeps_its_criteria(client):
    ids = await _families(client)
    r = await client.post("/Patient/_search", content="family:contains=a&_sort=-family&_count=2",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text
    with_a = [ids[i] for i in (4, 3, 2, 0)]  # Evans, Davis, Clark, Adams
    assert match_ids(r.json()) == with_a[:2]

    second = await read_json(client, links(r.json())["next"])
    back = await read_json(client, links(second)["previous"])

    assert match_ids(second) == with_a[2:4]
    assert "next" not in links(second)
    assert match_ids(back) == with_a[:2]
    assert [k for k, _ in params(links(second)["previous"])] == ["family:contains", "_sort", "_count", "_cursor"]


async def test_summary_count_has_no_paging_links(client):
    await _families(client)

    bundle = await search(client, "Patient", {"_summary": "count"})

    assert (bundle["total"], list(links(bundle))) == (9, ["self"])


async def test_tampered_previous_cursor_is_400(client):
    await _families(client)

    for key in ({"before": [{"a": 1}]}, {"before": ["a", "b", "c", "d", "e"]}, {"back": ["x"]}):
        r = await client.get("/Patient", params={"_sort": "family", "_cursor": cursor(key)})
        assert_outcome(r, 400, "invalid", "_cursor")


async def test_history_pages_link_previous_and_first(client):
    a = await create(client, patient())
    for _ in range(6):
        await update(client, a)
    path = f"/Patient/{a['id']}/_history"

    pages = await follow(client, path, {"_count": "3"})
    assert [set(links(p)) for p in pages] == [
        {"self", "first", "next"}, {"self", "first", "previous", "next"}, {"self", "first", "previous"}]
    back = await read_json(client, links(pages[2])["previous"])
    first = await read_json(client, links(back)["previous"])

    def etags(bundle):
        return [e["response"]["etag"] for e in bundle["entry"]]

    assert etags(back) == etags(pages[1]) == ['W/"4"', 'W/"3"', 'W/"2"']
    assert etags(first) == etags(pages[0])
    assert "previous" not in links(first)
    assert etags(await read_json(client, links(back)["first"])) == etags(pages[0])


async def test_history_of_one_page_has_only_a_self_link(client):
    a = await create(client, patient())

    bundle = await read_json(client, f"/Patient/{a['id']}/_history")

    assert list(links(bundle)) == ["self"]


async def test_tampered_history_cursor_of_a_backward_form_is_400(client):
    await create(client, patient())

    r = await client.get("/_history", params={"_cursor": cursor({"upto": [{"a": 1}]})})

    assert_outcome(r, 400, "invalid", "_cursor")
