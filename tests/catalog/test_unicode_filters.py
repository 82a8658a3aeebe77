# ruff: noqa: RUF001  (the test strings are Cyrillic and Greek on purpose)
"""CQL2 ``casei`` and ``accenti`` fold Unicode, not only ASCII (issue 12, item 6): a
platform used in six languages finds "Москва" with ``casei('москва')``, "Αθήνα" with
``accenti(casei('ΑΘΗΝΑ'))`` and "القاهرة" without its vowel marks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cql2
import pytest

from eoshare.catalog import SearchQuery
from eoshare.catalog.sqlite import SqliteCatalog

TITLES = {
    "moscow": "Москва",
    "athens": "Αθήνα",
    "knossos": "Κνωσός",
    "sao-tome": "São Tomé",
    "zurich": "Zürich",
    "strasse": "Straße",
    "cairo": "القَاهِرَة",
    "paris": "Paris",
}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteCatalog]:
    path: Path = tmp_path_factory.mktemp("unicode") / "c.db"
    catalog = SqliteCatalog(path)
    catalog.create_collection(
        {
            "type": "Collection",
            "stac_version": "1.1.0",
            "id": "places",
            "description": "scenes titled in several scripts",
            "license": "CC0-1.0",
            "extent": {
                "spatial": {"bbox": [[-180, -90, 180, 90]]},
                "temporal": {"interval": [[None, None]]},
            },
            "links": [],
        }
    )
    catalog.upsert_items(
        {
            "type": "Feature",
            "stac_version": "1.1.0",
            "id": ident,
            "collection": "places",
            "geometry": {"type": "Point", "coordinates": [k, 0]},
            "properties": {"datetime": "2024-05-01T00:00:00Z", "title": title},
            "links": [],
            "assets": {},
        }
        for k, (ident, title) in enumerate(TITLES.items())
    )
    yield catalog
    catalog.close()


CASES = [
    # Cyrillic, upper and lower case
    ("CASEI(title) = casei('москва')", {"moscow"}),
    ("CASEI(title) = casei('МОСКВА')", {"moscow"}),
    ("CASEI(title) LIKE casei('МОС%')", {"moscow"}),
    # Greek: case and tonos; final sigma folds like medial sigma
    ("ACCENTI(CASEI(title)) = accenti(casei('ΑΘΗΝΑ'))", {"athens"}),
    ("ACCENTI(CASEI(title)) = accenti(casei('ΚΝΩΣΟΣ'))", {"knossos"}),
    ("CASEI(title) = casei('ΑΘΗΝΑ')", set()),  # the tonos still counts without ACCENTI
    # accented Latin, and the German sharp s
    ("ACCENTI(CASEI(title)) = accenti(casei('SAO TOME'))", {"sao-tome"}),
    ("ACCENTI(title) = accenti('Zurich')", {"zurich"}),
    ("ACCENTI(title) = accenti('zurich')", set()),  # case still counts without CASEI
    ("CASEI(title) = casei('STRASSE')", {"strasse"}),
    # Arabic: the vowel marks (harakat) are accents
    ("ACCENTI(title) = accenti('القاهرة')", {"cairo"}),
    ("title = 'القاهرة'", set()),
    # LIKE itself is case-sensitive, as CQL2 says
    ("title LIKE 'paris'", set()),
    ("title LIKE 'Par%'", {"paris"}),
    ("CASEI(title) LIKE casei('paris')", {"paris"}),
]


@pytest.mark.parametrize("text,expected", CASES, ids=[c[0] for c in CASES])
def test_unicode_casei_accenti(catalog: SqliteCatalog, text: str, expected: set[str]) -> None:
    page = catalog.search(
        SearchQuery(collections=("places",), filter=cql2.Expr(text).to_json(), limit=100)
    )
    assert {i["id"] for i in page.items} == expected
    assert page.number_matched == len(expected)
