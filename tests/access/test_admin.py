"""Publishing rights, terms acceptance, the audit and /usage, the admin API, the history,
``eoshare apply`` and the CLI verbs."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from security.at_rest import secrets_at_rest

from .conftest import ADMIN_TOKEN, DATA_BYTES, OTHER, PARTNER, PROVIDER, Node

OP = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _h(node: Node, name: str) -> dict[str, str]:
    return node.callers[name].headers


def _item(node: Node, cid: str, iid: str) -> dict[str, Any]:
    item = copy.deepcopy(node.items[("t-open", "t-open-0")])
    item.update({"id": iid, "collection": cid})
    item["assets"] = {}
    return item


def test_publishing_rights(node: Node, http: httpx.Client) -> None:
    new = _item(node, "t-open", "pub-1")
    # anonymous: 401; a plain analyst of the provider: 403; another member's admin: 403
    assert http.post("/collections/t-open/items", json=new).status_code == 401
    r = http.post("/collections/t-open/items", json=new, headers=_h(node, "owner"))
    assert r.status_code == 403
    r = http.post("/collections/t-open/items", json=new, headers=_h(node, "other_admin"))
    assert r.status_code == 403 and PROVIDER in r.json()["detail"]
    # a hidden collection answers another member's admin as if it did not exist
    r = http.delete("/collections/t-provider/items/t-provider-0", headers=_h(node, "other_admin"))
    assert r.status_code == 404
    # the provider's admin may; so may an operator (the static admin token is one)
    r = http.post("/collections/t-open/items", json=new, headers=_h(node, "owner_admin"))
    assert r.status_code == 201, r.text
    r = http.delete("/collections/t-open/items/pub-1", headers=OP)
    assert r.status_code == 204
    # a provider-admin creating a collection makes its member the provider, restricted
    # until it sets an agreement
    coll = http.get("/collections/t-open", headers=OP).json()
    coll = {k: v for k, v in coll.items() if not k.startswith("eoshare:")}
    coll.update({"id": "t-new-by-other", "links": []})
    r = http.post("/collections", json=coll, headers=_h(node, "other_admin"))
    assert r.status_code == 201, r.text
    agreement = http.get("/admin/agreements/t-new-by-other", headers=OP).json()
    assert agreement["provider"] == OTHER and agreement["access"] == "provider"
    assert http.get("/collections/t-new-by-other").status_code == 404
    assert http.get("/collections/t-new-by-other", headers=_h(node, "other")).status_code == 200
    # the new provider sets it open through the API; everyone sees it at once
    r = http.put(
        "/admin/agreements/t-new-by-other",
        json={"provider": OTHER, "access": "open"},
        headers=_h(node, "other_admin"),
    )
    assert r.status_code == 200, r.text
    assert http.get("/collections/t-new-by-other").status_code == 200
    # but may not hand it to another member, nor edit another member's agreement
    r = http.put(
        "/admin/agreements/t-new-by-other",
        json={"provider": PROVIDER, "access": "open"},
        headers=_h(node, "other_admin"),
    )
    assert r.status_code == 403
    r = http.put(
        "/admin/agreements/t-open",
        json={"provider": PROVIDER, "access": "provider"},
        headers=_h(node, "other_admin"),
    )
    assert r.status_code == 403
    history = http.get("/admin/history?subject=t-new-by-other", headers=OP).json()["history"]
    assert [h["who"] for h in history][:2] == ["other_admin", "other_admin"]
    assert (
        http.delete("/collections/t-new-by-other", headers=_h(node, "other_admin")).status_code
        == 204
    )


def test_terms_acceptance_then_download_and_usage(node: Node, http: httpx.Client) -> None:
    reader = _h(node, "reader")
    r = http.get("/download/t-terms/t-terms-0/data", headers=reader)
    assert r.status_code == 403 and "accept-terms" in r.json()["detail"]
    assert http.post("/collections/t-terms/accept-terms").status_code == 401
    r = http.post("/collections/t-terms/accept-terms", headers=reader)
    assert r.status_code == 200 and r.json()["terms"].startswith("Peaceful use only")
    r = http.get("/download/t-terms/t-terms-0/data", headers=reader)
    assert r.status_code == 200 and r.content == DATA_BYTES
    item = http.get("/collections/t-terms/items/t-terms-0", headers=reader).json()
    assert item["assets"]["data"]["eoshare:access"]["decision"] == "full"
    coll = http.get("/collections/t-terms", headers=reader).json()
    assert coll["eoshare:agreement"]["terms_accepted"] is True
    acceptances = http.get("/admin/acceptances?username=reader", headers=OP).json()
    assert [a["collection"] for a in acceptances["acceptances"]] == ["t-terms"]

    # the grant is in the audit: operators see all, the member its own, others nothing
    usage = http.get("/usage", headers=OP).json()
    assert usage["grants"] >= 1 and usage["bytes"] >= len(DATA_BYTES)
    assert usage["countries_reached"] >= 1
    assert any(r["key"] == "t-terms" for r in usage["by_collection"])
    assert usage["top_collections"]
    mine = http.get("/usage", headers=reader).json()
    assert mine["member"] == PARTNER
    assert {r["key"] for r in mine["by_member"]} == {PARTNER}
    assert {r["key"] for r in mine["by_country"]} == {"VN"}
    assert http.get(f"/usage?member={PROVIDER}", headers=reader).status_code == 403
    assert http.get("/usage", headers=_h(node, "public_user")).status_code == 403
    assert http.get("/usage").status_code == 401
    assert http.get("/usage?since=yesterday", headers=OP).status_code == 400


def test_admin_api_permissions_and_tokens(node: Node, http: httpx.Client) -> None:
    # only operators manage members
    r = http.put(
        "/admin/members/xx-new",
        json={"name": "X", "country": "XX"},
        headers=_h(node, "owner_admin"),
    )
    assert r.status_code == 403
    r = http.put("/admin/members/xx-new", json={"name": "X", "country": "nope"}, headers=OP)
    assert r.status_code == 400
    # a provider-admin manages its own member's users, never operators
    r = http.put(
        "/admin/users/ke-intern",
        json={"member": PROVIDER, "roles": ["viewer"]},
        headers=_h(node, "owner_admin"),
    )
    assert r.status_code == 200
    r = http.put(
        "/admin/users/ke-boss",
        json={"member": PROVIDER, "roles": ["operator"]},
        headers=_h(node, "owner_admin"),
    )
    assert r.status_code == 403
    r = http.put(
        "/admin/users/bd-x",
        json={"member": OTHER, "roles": ["viewer"]},
        headers=_h(node, "owner_admin"),
    )
    assert r.status_code == 403
    # tokens: shown once, listed without secrets, revoked -> 401 at once
    r = http.post(
        "/admin/users/ke-intern/tokens",
        json={"days": 1, "label": "ci"},
        headers=_h(node, "owner_admin"),
    )
    assert r.status_code == 201
    token, token_id = r.json()["token"], r.json()["id"]
    headers = {"Authorization": f"Bearer {token}"}
    assert http.get("/auth/me", headers=headers).json()["user"] == "ke-intern"
    listed = http.get("/admin/tokens?username=ke-intern", headers=OP).text
    assert token_id in listed and token not in listed
    assert (
        http.delete(f"/admin/tokens/{token_id}", headers=_h(node, "owner_admin")).status_code == 204
    )
    r = http.get("/auth/me", headers=headers)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert secrets_at_rest(node.data_dir, [token]) == []
    # unknown agreement fields and levels are 400s, not 500s
    r = http.put(
        "/admin/agreements/t-open", json={"provider": PROVIDER, "access": "secret"}, headers=OP
    )
    assert r.status_code == 400
    r = http.put("/admin/agreements/t-open", json={"provider": PROVIDER, "colour": 1}, headers=OP)
    assert r.status_code == 400


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eoshare.cli", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_apply_file_and_cli(tmp_path: Path) -> None:
    decl = tmp_path / "agreements.toml"
    decl.write_text(
        """
[[members]]
code = "ke-kspa"
name = "Kenya Space Agency"
country = "KE"
[[members]]
code = "vn-vnsc"
name = "Vietnam National Space Center"
country = "VN"
[[users]]
username = "amina"
member = "ke-kspa"
roles = ["provider-admin"]
[[agreements]]
collection = "kestrel"
provider = "ke-kspa"
access = "partners"
partners = ["vn-vnsc"]
embargo_days = 90
"""
    )
    dry = _cli(tmp_path, "apply", str(decl), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would change agreement kestrel" in dry.stdout
    assert "0 changes" not in dry.stderr
    applied = _cli(tmp_path, "apply", str(decl))
    assert applied.returncode == 0, applied.stderr
    again = _cli(tmp_path, "apply", str(decl))
    assert "0 change(s), 4 unchanged" in again.stderr
    listed = _cli(tmp_path, "agreements", "list")
    assert "kestrel\tpartners" in listed.stdout and "90 days" in listed.stdout
    token = _cli(tmp_path, "tokens", "create", "amina", "--days", "1")
    assert token.returncode == 0 and token.stdout.startswith("eos_")
    history = _cli(tmp_path, "agreements", "history", "kestrel")
    assert "agreement.put" in history.stdout and "cli:" in history.stdout
    # a YAML file with an undeclared partner: one readable line, exit 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "agreements:\n  - {collection: x, provider: ke-kspa, access: partners, partners: [zz]}\n"
    )
    r = _cli(tmp_path, "apply", str(bad))
    assert r.returncode == 1 and r.stderr.startswith("error:") and "Traceback" not in r.stderr
    # passwords never come from a reviewable file
    pw = tmp_path / "pw.toml"
    pw.write_text('[[users]]\nusername = "x"\npassword = "hunter22hunter"\n')
    r = _cli(tmp_path, "apply", str(pw))
    assert r.returncode == 1 and "hunter22" not in r.stderr
    usage = _cli(tmp_path, "usage")
    assert usage.returncode == 0 and "0 grants" in usage.stdout
