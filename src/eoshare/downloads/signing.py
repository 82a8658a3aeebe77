"""Signed links: time-limited, tamper-proof download URLs bound to a caller and an asset.

A link is the download URL plus four query parameters::

    /download/{collection}/{item}/{asset}?exp=1767225600&sub=<principal>&kid=k1&sig=<mac>

* ``exp``  expiry, Unix seconds (UTC);
* ``sub``  the caller the link was made for: base64url of a compact JSON object
  (``u`` user, ``m`` member, ``c`` country, ``r`` roles, ``k`` the credential used), so
  the download is decided for that caller even though curl, wget, GDAL or a download
  manager sends no credentials. At use, ``AssetGate`` asks ``Authenticator.link_subject``
  whether that user still exists and that credential is still valid (a removed user or a
  revoked token kills its links) and decides for the user as they are now;
* ``kid``  which server key signed it;
* ``sig``  base64url HMAC-SHA256 over ``v1``, the collection, item and asset key, ``sub``
  and ``exp``, joined by newlines.

Keys rotate (``eoshare keys rotate|list|retire|remove``): the newest key that is not
retired signs, every listed key verifies, so old links keep working until they expire or
their key is removed; every process of the node reads the key file again when it changes.
A bad, expired or tampered link raises ``AccessDeniedError`` (403).
Built once in ``create_app`` from ``DownloadsSettings``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eoshare.access import Principal
from eoshare.errors import AccessDeniedError, InvalidRequestError, StorageError

SIGNATURE_PARAMS = ("exp", "sub", "kid", "sig")
log = logging.getLogger(__name__)
_VERSION = b"v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_principal(principal: Principal, *, credential: bool = False) -> str:
    """A principal as the compact, URL-safe ``sub`` value; with ``credential``, also the
    credential it used (``k``), which signed links carry so that they die with it."""
    doc: dict[str, Any] = {}
    if credential and principal.credential is not None:
        doc["k"] = principal.credential
    if principal.user is not None:
        doc["u"] = principal.user
    if principal.member is not None:
        doc["m"] = principal.member
    if principal.country is not None:
        doc["c"] = principal.country
    if principal.roles:
        doc["r"] = sorted(principal.roles)
    return _b64(json.dumps(doc, separators=(",", ":"), sort_keys=True).encode())


def decode_principal(sub: str) -> Principal:
    try:
        doc = json.loads(_unb64(sub))
        if not isinstance(doc, dict):
            raise ValueError
        roles = doc.get("r", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise ValueError
        for k in ("u", "m", "c", "k"):
            if k in doc and not isinstance(doc[k], str):
                raise ValueError
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise AccessDeniedError("the signed link is not valid: its 'sub' is malformed") from exc
    return Principal(user=doc.get("u"), member=doc.get("m"), country=doc.get("c"),
                     roles=frozenset(roles), credential=doc.get("k"))  # fmt: skip


@dataclass(frozen=True)
class SignedLink:
    """The query parameters of one signed link."""

    exp: int
    sub: str
    kid: str
    sig: str

    def params(self) -> dict[str, str]:
        return {"exp": str(self.exp), "sub": self.sub, "kid": self.kid, "sig": self.sig}


class Signer:
    """Signs and verifies download links with HMAC keys (``{kid: secret}``, first signs)."""

    def __init__(self, keys: list[tuple[str, bytes]], *, ttl_s: int = 3600,
                 max_ttl_s: int = 7 * 24 * 3600, key_file: Path | None = None) -> None:  # fmt: skip
        self._set(keys)
        self.ttl_s = ttl_s
        self.max_ttl_s = max_ttl_s
        # the keys' file: when ``eoshare keys rotate|retire|remove`` (or another process)
        # replaces it, every process signing with it reads it again at its next link
        self.key_file = key_file
        self._seen = self._stat()

    def _set(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise InvalidRequestError("at least one signing key is needed")
        for kid, secret in keys:
            if not kid or any(c in kid for c in ":&=?/ ") or len(secret) < 16:
                raise InvalidRequestError(
                    f"signing key {kid!r} needs a plain id and a secret of 16+ bytes"
                )
        self._keys = dict(keys)
        self.current = keys[0][0]

    def _stat(self) -> tuple[int, int, int] | None:
        if self.key_file is None:
            return None
        try:
            st = os.stat(self.key_file)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _refresh(self) -> None:
        """Read the key file again when it changed (one stat per link: the file is
        replaced whole by os.replace, so a new inode or time says it changed)."""
        if self.key_file is None:
            return
        seen = self._stat()
        if seen == self._seen or seen is None:
            return
        try:
            doc = _read_key_file(self.key_file)
            if doc and not all(d.get("retired") for d in doc):
                self._set(_signing_order(doc))
        except (StorageError, InvalidRequestError, KeyError, TypeError):
            log.warning("cannot read the changed signing keys; keeping the previous ones")
        self._seen = seen

    def _mac(self, kid: str, collection: str, item: str, asset: str, sub: str, exp: int) -> str:
        message = b"\n".join(
            [_VERSION, collection.encode(), item.encode(), asset.encode(), sub.encode(),
             str(exp).encode()]
        )  # fmt: skip
        return _b64(hmac.new(self._keys[kid], message, hashlib.sha256).digest())

    def sign(self, principal: Principal, collection: str, item: str, asset: str,
             *, ttl_s: int | None = None, expires: int | None = None) -> SignedLink:  # fmt: skip
        """A link for ``principal`` to one asset, valid ``ttl_s`` seconds (or until
        ``expires``), never longer than the configured maximum."""
        self._refresh()
        now = int(time.time())
        exp = expires if expires is not None else now + (ttl_s or self.ttl_s)
        exp = min(exp, now + self.max_ttl_s)
        sub = encode_principal(principal, credential=True)
        return SignedLink(exp, sub, self.current, self._mac(self.current, collection, item,
                                                             asset, sub, exp))  # fmt: skip

    def verify(self, collection: str, item: str, asset: str, params: dict[str, str]) -> Principal:
        """The principal a valid link was made for; AccessDeniedError for any fault."""
        missing = [p for p in SIGNATURE_PARAMS if not params.get(p)]
        if missing:
            raise AccessDeniedError(f"the signed link is incomplete: it lacks {', '.join(missing)}")
        kid = params["kid"]
        self._refresh()
        if kid not in self._keys:
            raise AccessDeniedError("the signed link was made with a key this node no longer has")
        try:
            exp = int(params["exp"])
        except ValueError as exc:
            raise AccessDeniedError("the signed link is not valid: 'exp' is not a number") from exc
        expected = self._mac(kid, collection, item, asset, params["sub"], exp)
        if not hmac.compare_digest(expected.encode(), params["sig"].encode()):
            raise AccessDeniedError(
                "the signed link is not valid: its signature does not match "
                "(it was changed, or made for another asset)"
            )
        if exp < time.time():
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp))
            raise AccessDeniedError(f"the signed link expired at {when}; ask for a new one")
        return decode_principal(params["sub"])


def parse_keys(entries: list[str]) -> list[tuple[str, bytes]]:
    """``["kid:secret", ...]`` from the settings -> ``[(kid, secret bytes), ...]``."""
    keys = []
    for entry in entries:
        kid, sep, secret = entry.partition(":")
        if not sep or not kid or not secret:
            raise InvalidRequestError(
                "each EOSHARE_DOWNLOADS__SIGNING_KEYS entry must be 'kid:secret'"
            )
        keys.append((kid.strip(), secret.strip().encode()))
    return keys


def _read_key_file(path: Path) -> list[dict[str, Any]]:
    """The entries of the key file (``[]`` when it does not exist yet)."""
    if not path.is_file():
        return []
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, list):
            raise ValueError("not a list")
        for entry in doc:
            if not isinstance(entry, dict) or not entry.get("kid") or not entry.get("secret"):
                raise ValueError("every entry needs a kid and a secret")
        return doc
    except (OSError, ValueError) as exc:
        raise StorageError(f"cannot read the signing keys in {path}: {exc}") from exc


def _write_key_file(path: Path, doc: list[dict[str, Any]]) -> None:
    """Atomically, readable by the owner only."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(tmp, path)
    except OSError as exc:
        raise StorageError(f"cannot write the signing keys to {path}: {exc}") from exc


def _signing_order(doc: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
    """Keys for ``Signer``: the newest key that is not retired first (it signs), then
    every other key (they verify)."""
    active = [d for d in doc if not d.get("retired")]
    rest = [d for d in doc if d.get("retired")]
    return [(str(d["kid"]), str(d["secret"]).encode()) for d in (*active, *rest)]


@dataclass(frozen=True)
class KeyInfo:
    """One signing key as ``eoshare keys list`` shows it (never its secret)."""

    kid: str
    created: str | None
    # "signing": makes new links; "verifying": older, still accepted; "retired": never
    # signs again, still accepted until removed
    state: str


def list_keys(path: Path) -> list[KeyInfo]:
    doc = _read_key_file(path)
    signing = next((d["kid"] for d in doc if not d.get("retired")), None)
    return [
        KeyInfo(
            str(d["kid"]),
            d.get("created"),
            "retired" if d.get("retired") else ("signing" if d["kid"] == signing else "verifying"),
        )
        for d in doc
    ]


def load_or_create_keys(path: Path) -> list[tuple[str, bytes]]:
    """The keys kept in ``path`` (JSON ``[{"kid":..., "secret":...}]``, newest first),
    made with one random key on first use so that links survive restarts. The newest key
    that is not retired signs; all verify."""
    doc = _read_key_file(path)
    if not doc:
        return rotate_keys(path)
    if all(d.get("retired") for d in doc):
        raise StorageError(
            f"every signing key in {path} is retired: run 'eoshare keys rotate' to add one"
        )
    return _signing_order(doc)


def rotate_keys(path: Path, keep: int | None = None) -> list[tuple[str, bytes]]:
    """Add a new random key at the head of ``path`` (it signs from now on); links made
    with the previous keys still verify. ``keep``: drop all but the ``keep`` newest."""
    old = _read_key_file(path)
    new = {
        "kid": f"k{int(time.time())}{secrets.token_hex(2)}",
        "secret": secrets.token_urlsafe(32),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    doc = [new, *old]
    if keep is not None:
        doc = doc[:keep]
    _write_key_file(path, doc)
    return _signing_order(doc)


def _find(doc: list[dict[str, Any]], kid: str, path: Path) -> dict[str, Any]:
    for entry in doc:
        if entry["kid"] == kid:
            return entry
    known = ", ".join(str(d["kid"]) for d in doc) or "none"
    raise InvalidRequestError(f"no signing key {kid!r} in {path} (keys: {known})")


def retire_key(path: Path, kid: str) -> None:
    """The key stops signing; links it made keep working until it is removed. Refused
    when no other key could sign (rotate first)."""
    doc = _read_key_file(path)
    entry = _find(doc, kid, path)
    if not any(not d.get("retired") for d in doc if d is not entry):
        raise InvalidRequestError(
            f"key {kid!r} is the only key that can sign: run 'eoshare keys rotate' first"
        )
    entry["retired"] = True
    _write_key_file(path, doc)


def remove_key(path: Path, kid: str) -> None:
    """Forget the key: every link it signed is refused (403) from the next start on.
    The key that signs now cannot be removed (rotate first)."""
    doc = _read_key_file(path)
    entry = _find(doc, kid, path)
    if not entry.get("retired") and next(d for d in doc if not d.get("retired")) is entry:
        raise InvalidRequestError(
            f"key {kid!r} signs new links: run 'eoshare keys rotate' (and retire it) first"
        )
    _write_key_file(path, [d for d in doc if d is not entry])
