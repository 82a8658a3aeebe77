"""A real eoshare node with members, users, tokens and one collection per kind of
agreement, served by uvicorn on 127.0.0.1; an RSA key pair and JWKS file made here for
the OIDC tests.

Items are real Sentinel-2 STAC items from ``../shared/data/stac`` copied into the test
collections, with acquisition times moved to known distances from now (for embargoes).
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from eoshare.access.agreements import Member, agreement_from_dict
from eoshare.access.store import AccessStore
from eoshare.catalog import open_catalog
from eoshare.ingest.raster import ingest_rasters
from eoshare.storage import open_store
from live import live_node

JSON = dict[str, Any]
ADMIN_TOKEN = "access-test-admin-token-9876543210"
ISSUER = "https://idp.vn.example"
AUDIENCE = "eoshare-test"
PROVIDER = "ke-kspa"
PARTNER = "vn-vnsc"
OTHER = "bd-sparrso"

# one collection per kind of agreement, all provided by PROVIDER
AGREEMENTS: dict[str, JSON] = {
    "t-open": {"access": "open", "licence": "CC-BY-4.0"},
    "t-members": {"access": "members"},
    "t-partners": {"access": "partners", "partners": [PARTNER]},
    "t-provider": {"access": "provider"},
    "t-embargo": {"access": "provider", "embargo_days": 30},
    "t-embargo-members": {"access": "provider", "embargo_days": 30, "embargo_opens_to": "members"},
    "t-reduced": {"access": "provider", "reduced_resolution_m": 100},
    "t-terms": {
        "access": "open",
        "licence": "CC-BY-NC-4.0",
        "terms": "Peaceful use only; no transfer to third parties without consent.",
    },
}
# days before now of each item's acquisition: two inside a 30-day embargo, two past it
AGES = (2, 10, 45, 400)
TILE_BAND = ("B5", "B5", "B4", "B4")
L8 = "LC08_L1TP_016037_20170813_20170814_01_RT"
DATA_BYTES = bytes(range(256)) * 40
THUMB_BYTES = b"\x89PNG\r\n\x1a\n" + b"thumbnail" * 10


@dataclass(frozen=True)
class Caller:
    name: str
    headers: dict[str, str]
    user: str | None = None
    member: str | None = None
    operator: bool = False
    # expired, revoked, forged: every request answers 401
    bad: bool = False


@dataclass
class Node:
    url: str
    data_dir: Path
    items: dict[tuple[str, str], JSON] = field(default_factory=dict)
    callers: dict[str, Caller] = field(default_factory=dict)
    private_pem: bytes = b""
    other_private_pem: bytes = b""
    kid: str = "test-key-1"

    def oidc_token(self, claims: JSON, *, key: bytes | None = None, **header: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600, **claims}
        return jwt.encode(
            body, key or self.private_pem, algorithm="RS256", headers={"kid": self.kid, **header}
        )


def _template_items(shared: Path) -> list[JSON]:
    path = shared / "stac" / "sentinel-2-l2a_pc_and_earthsearch.ndjson"
    items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [i for i in items if i.get("collection") == "sentinel-2-l2a"][: len(AGES)]


def _rsa() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key, pem


@contextlib.contextmanager
def serve(data_dir: Path, extra_env: dict[str, str]) -> Iterator[str]:
    env = {
        "EOSHARE_LOG_LEVEL": "info",
        "EOSHARE_API__ADMIN_TOKEN": ADMIN_TOKEN,
        "EOSHARE_ACCESS__COOKIE_SECURE": "false",
        **extra_env,
    }
    with live_node(data_dir, env, ready_path="/conformance") as url:
        yield url


def _landsat_cogs(shared: Path, scratch: Path) -> tuple[JSON, dict[str, tuple[JSON, bytes]]]:
    """Real Landsat 8 bands (B4, B5) made into COGs by ``ingest_rasters`` in a scratch
    node: the footprint and, per band, the asset document and the COG's bytes."""
    raster = shared / "raster"
    catalog = open_catalog(f"sqlite:///{scratch / 'catalog.db'}")
    store = open_store((scratch / "store").resolve().as_uri())
    try:
        report = ingest_rasters(
            [raster / f"{L8}_{band}.TIF" for band in ("B4", "B5")],
            catalog=catalog, store=store, collection_id="scratch", create_collection=True,
            one_item=True,
        )  # fmt: skip
        assert report.ok, report.failures
        item = catalog.get_item("scratch", report.item_ids[0])
    finally:
        catalog.close()
    bands = {}
    for name, asset in item["assets"].items():
        if name.upper().endswith(("B4", "B5")) and "eoshare:key" in asset:
            with store.open(asset["eoshare:key"]) as f:
                bands[name.upper()[-2:]] = (asset, f.read())
    assert set(bands) == {"B4", "B5"}, list(item["assets"])
    return {"geometry": item["geometry"], "bbox": item["bbox"]}, bands


def build_node(
    data_dir: Path, shared: Path, catalog_url: str | None = None
) -> tuple[Node, dict[str, str]]:
    """The catalogue, the access database and the OIDC keys; returns the server env."""
    node = Node(url="", data_dir=data_dir)
    footprint, cogs = _landsat_cogs(shared, data_dir.parent / f"{data_dir.name}-scratch")
    catalog_url = catalog_url or f"sqlite:///{data_dir / 'catalog.db'}"
    catalog = open_catalog(catalog_url)
    store = open_store((data_dir / "store").resolve().as_uri())
    templates = _template_items(shared)
    coll_template = json.loads((shared / "stac" / "collection_sentinel-2-l2a_pc.json").read_text())
    now = datetime.now(UTC)
    try:
        for cid in AGREEMENTS:
            doc = copy.deepcopy(coll_template)
            doc.update({"id": cid, "title": f"test {cid}", "links": []})
            catalog.create_collection(doc)
            batch = []
            for n, (tpl, age) in enumerate(zip(templates, AGES, strict=True)):
                item = copy.deepcopy(tpl)
                item["id"] = iid = f"{cid}-{n}"
                item["collection"] = cid
                item["links"] = []
                # assets held by this node's store, so that /download serves them
                item["assets"] = {
                    "data": {
                        "href": f"{cid}/{iid}/data.bin",
                        "type": "application/octet-stream",
                        "roles": ["data"],
                        "eoshare:key": f"{cid}/{iid}/data.bin",
                    },
                    "thumbnail": {
                        "href": f"{cid}/{iid}/thumb.png",
                        "type": "image/png",
                        "roles": ["thumbnail"],
                        "eoshare:key": f"{cid}/{iid}/thumb.png",
                    },
                }
                # a real COG for the tile routes: the young items (inside an embargo)
                # get band 5, the old ones band 4, so a mosaic shows which it drew
                band = TILE_BAND[n]
                cog, cog_bytes = cogs[band]
                item["assets"]["raster"] = {
                    **{k: v for k, v in cog.items() if k not in ("href", "eoshare:key")},
                    "href": f"{cid}/{iid}/{band}.tif",
                    "eoshare:key": f"{cid}/{iid}/{band}.tif",
                    "roles": ["data"],
                }
                store.put_bytes(f"{cid}/{iid}/{band}.tif", cog_bytes)
                item.update(footprint)
                # keys as the node makes them: bound to the item (<collection>/<item>/...)
                store.put_bytes(f"{cid}/{iid}/data.bin", DATA_BYTES)
                store.put_bytes(f"{cid}/{iid}/thumb.png", THUMB_BYTES)
                item["properties"]["datetime"] = (now - timedelta(days=age)).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                )
                batch.append(item)
                node.items[(cid, item["id"])] = item
            catalog.upsert_items(batch)
    finally:
        catalog.close()

    access = AccessStore(data_dir / "access.db")
    try:
        for code, country in ((PROVIDER, "KE"), (PARTNER, "VN"), (OTHER, "BD")):
            access.put_member(Member(code, f"Agency {code}", country), who="test")
        for cid, terms in AGREEMENTS.items():
            access.put_agreement(
                agreement_from_dict({"collection": cid, "provider": PROVIDER, **terms}), who="test"
            )
        users = {
            "owner": (PROVIDER, ["analyst"]),
            "owner_admin": (PROVIDER, ["provider-admin"]),
            "partner": (PARTNER, ["analyst"]),
            "other": (OTHER, ["analyst"]),
            "other_admin": (OTHER, ["provider-admin"]),
            "public_user": (None, ["viewer"]),
            "browser": (OTHER, ["analyst"]),  # signs in with a password (test_auth)
            "reader": (PARTNER, ["analyst"]),  # accepts terms (test_admin)
            "operator": (None, ["operator"]),
            "expired": (PROVIDER, ["analyst"]),
            "revoked": (PROVIDER, ["analyst"]),
        }
        for name, (member, roles) in users.items():
            access.put_user(name, member=member, roles=roles, password="correct horse", who="test")
        callers = [Caller("anonymous", {})]
        for name, (member, roles) in users.items():
            _, secret = access.create_token(name, days=1, who="test")
            if name == "expired":
                # expired a minute ago: the store keeps whole seconds
                access._db.execute(
                    "UPDATE tokens SET expires = ? WHERE username = 'expired'",
                    ((now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),),
                )
            if name == "revoked":
                access.revoke_token(access.list_tokens("revoked")[0].id, who="test")
            callers.append(
                Caller(
                    name,
                    {"Authorization": f"Bearer {secret}"},
                    user=name,
                    member=member,
                    operator="operator" in roles,
                    bad=name in ("expired", "revoked"),
                )
            )
        forged = "eos_0123456789ab_" + "A" * 43
        callers.append(Caller("forged", {"Authorization": f"Bearer {forged}"}, bad=True))
    finally:
        access.close()

    key, node.private_pem = _rsa()
    _, node.other_private_pem = _rsa()
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": node.kid, "use": "sig", "alg": "RS256"})
    jwks = data_dir / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    env = {
        "EOSHARE_CATALOG": catalog_url,
        "EOSHARE_ACCESS__OIDC": json.dumps(
            [{"issuer": ISSUER, "audience": AUDIENCE, "jwks_file": str(jwks),
              "member_claim": "agency", "roles_claim": "roles"}]
        ),
    }  # fmt: skip
    # a forged JWT: right issuer and claims, signed by a key the node does not trust
    forged_jwt = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "agency": PROVIDER,
         "exp": int(time.time()) + 3600},
        node.other_private_pem,
        algorithm="RS256",
        headers={"kid": node.kid},
    )  # fmt: skip
    callers.append(Caller("forged_jwt", {"Authorization": f"Bearer {forged_jwt}"}, bad=True))
    partner_jwt = node.oidc_token(
        {"sub": "thu", "agency": PARTNER, "roles": ["analyst"], "exp": int(time.time()) + 7200}
    )
    callers.append(
        Caller(
            "partner_oidc",
            {"Authorization": f"Bearer {partner_jwt}"},
            user="oidc:idp.vn.example:thu",
            member=PARTNER,
        )
    )
    node.callers = {c.name: c for c in callers}
    return node, env


# the test modules that run against both catalogue backends (the others: SQLite only)
ON_BOTH_BACKENDS = {"test_matrix"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if "node" in metafunc.fixturenames and module in ON_BOTH_BACKENDS:
        metafunc.parametrize(
            "catalog_backend", ["sqlite", "pgstac"], indirect=True, scope="session"
        )


@pytest.fixture(scope="session")
def catalog_backend(request: pytest.FixtureRequest) -> str:
    """The catalogue backend of ``node``: sqlite, unless a module asks for both."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture(scope="session")
def node(
    tmp_path_factory: pytest.TempPathFactory,
    shared_data: Path,
    catalog_backend: str,
    request: pytest.FixtureRequest,
) -> Iterator[Node]:
    data_dir = tmp_path_factory.mktemp("eoshare-access")
    catalog_url = None
    if catalog_backend == "pgstac":
        catalog_url = request.getfixturevalue("pg").new_catalog_url()
    built, env = build_node(data_dir, shared_data, catalog_url)
    with serve(data_dir, env) as url:
        built.url = url
        # the OIDC partner user exists only in its IdP: its token is made per run
        yield built
        log = (data_dir / "server.log").read_text()
    assert "Traceback" not in log, log


@pytest.fixture()
def http(node: Node) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=node.url, timeout=30) as client:
        yield client
