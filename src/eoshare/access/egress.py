"""``AssetGate``: the one path through which the bytes of an asset leave the node.

Every route that hands out stored bytes or pixels (``/download``, signed links, orders
and their zips, thumbnails, tiles, previews, point values, statistics, mosaics; and next:
processing inputs, federation peers, activations) calls this service, which does, in
order, what each route used to write by hand:

1. **who** -- a signed link stands in for its holder only while the user it was made for
   still exists and the token it was made with is not revoked (``LinkSubjects``);
2. **visible** -- the item is found through the catalogue *with the caller's visibility
   filter*: a hidden item is ``NotFoundError`` with the same text as an unknown one;
3. **bound** -- the asset's store key is read from node-assigned data only and must lie
   under the item's own prefix (``eoshare.catalog.assetkeys.bound_key``): a document that
   names another item's object holds nothing here;
4. **decided** -- the access policy's ``decide`` for the action; a refusal is a 403 that
   names the agreement;
5. **quota** -- the request's size is reserved atomically before anything is sent
   (``Quotas``), and given back if not sent;
6. **recorded** -- every grant is written to the audit log with the bytes actually sent.

The result says what to stream: the store key, a safe media type and file name, the
decision (and its maximum resolution). Built once in ``create_app`` (``app.state.gate``).
See docs/adr/0006-one-path-for-bytes.md.
"""

from __future__ import annotations

import logging
import mimetypes
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import unquote

from eoshare.access.base import AccessPolicy, Action, Decision, Principal
from eoshare.catalog.assetkeys import bound_key
from eoshare.catalog.validate import is_media_type
from eoshare.errors import AccessDeniedError, InvalidRequestError, NotFoundError

JSON = dict[str, Any]
log = logging.getLogger(__name__)

SIGNATURE_PARAMS = ("exp", "sub", "kid", "sig")
# Media types a browser may render or run as a page of this origin: downloads of these
# are always attachments, and every download is sandboxed (see download_headers).
ACTIVE_TYPES = re.compile(
    r"^(text/(html|xml|javascript|ecmascript|css|xsl|vtt)|application/(xhtml\+xml|xml|"
    r"javascript|ecmascript|x-javascript|pdf|wasm)|image/svg\+xml|[^/]+/[^;]*\+xml)(\s*;.*)?$",
    re.IGNORECASE,
)
_BAD_SEGMENT = re.compile(r"[\x00-\x1f\x7f/\\]")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.@+=,-]+")


class CatalogReader(Protocol):
    """What the gate needs of the catalogue (``eoshare.catalog.base.Catalog``)."""

    def get_item(self, collection_id: str, item_id: str, *, visible: JSON | None = None) -> JSON:
        """The item, or NotFoundError when it is absent or hidden by ``visible``."""
        ...


class LinkVerifier(Protocol):
    """Checks a signed link's parameters (``eoshare.downloads.signing.Signer``)."""

    def verify(self, collection: str, item: str, asset: str, params: dict[str, str]) -> Principal:
        """The principal the link was made for; AccessDeniedError for any fault."""
        ...


class LinkSubjects(Protocol):
    """Whether a signed link's subject still stands (``access.auth.Authenticator``)."""

    def link_subject(self, signed: Principal) -> Principal:
        """The subject as it is now; AccessDeniedError when removed or revoked."""
        ...


class Reserved(Protocol):
    def settle(self, used: int) -> None:
        """``used`` of the reservation was served; the rest goes back."""
        ...


class QuotaBook(Protocol):
    """Daily quotas (``eoshare.access.quotas.Quotas``)."""

    def reserve(
        self, principal: Principal, collection: str, unit: Literal["bytes", "tiles"], amount: int
    ) -> Reserved:
        """Reserve ``amount`` or raise QuotaExceededError saying how much remains."""
        ...


class BytesRefusedError(AccessDeniedError):
    """The policy refused the bytes; the problem document names the agreement."""

    def __init__(self, detail: str, agreement: str | None) -> None:
        super().__init__(detail)
        self.problem_extra = {"agreement": agreement} if agreement else {}


def check_segment(value: str, what: str) -> str:
    """Ids and asset keys in a URL are single path segments: no '/', '\\', '..', control
    characters, nor percent-encoded forms of them (400)."""
    decoded, previous = value, None
    while decoded != previous:
        previous, decoded = decoded, unquote(decoded)
    for form in (value, decoded):
        if form in ("", ".", "..") or _BAD_SEGMENT.search(form) or form.startswith("~"):
            raise InvalidRequestError(
                f"{what} {value!r} is not valid: it must be one path segment "
                "(no '/', '\\', '..' or control characters)"
            )
    return value


def action_for(asset: JSON) -> Action:
    """THUMBNAIL for an asset with the thumbnail role, else DOWNLOAD."""
    roles = asset.get("roles") or []
    return Action.THUMBNAIL if isinstance(roles, list) and "thumbnail" in roles else Action.DOWNLOAD


def refusal(decision: Decision, action: Action, what: str) -> str | None:
    """Why a decision does not allow handing out the bytes, or None when it does."""
    agreement = f" (agreement {decision.agreement!r})" if decision.agreement else ""
    if decision.kind == "denied":
        return f"{what} may not be downloaded{agreement}: {decision.reason or 'access denied'}"
    if decision.kind == "reduced" and action not in (Action.THUMBNAIL, Action.TILE):
        return (
            f"{what} is available to you only at reduced resolution "
            f"({decision.max_resolution_m:g} m){agreement}; full-resolution files cannot be "
            "downloaded: use the tiles or previews instead"
        )
    return None


def combine(decisions: Iterable[Decision]) -> Decision:
    """One decision for a picture made of several assets: denied if any is denied, else
    reduced to the coarsest limit among them, else full."""
    reduced: Decision | None = None
    first: Decision | None = None
    for d in decisions:
        first = first or d
        if d.kind == "denied":
            return d
        coarser = reduced is None or (reduced.max_resolution_m or 0.0) < (d.max_resolution_m or 0)
        if d.kind == "reduced" and d.max_resolution_m is not None and coarser:
            reduced = d
    return reduced or first or Decision.full()


def safe_media_type(asset: JSON, store_key: str) -> str:
    """The asset's declared type when it is a valid media type (never copied into a
    header unchecked), else a guess from the key, else application/octet-stream."""
    declared = asset.get("type")
    if is_media_type(declared):
        assert isinstance(declared, str)
        return declared
    return mimetypes.guess_type(store_key)[0] or "application/octet-stream"


def safe_file_name(item_id: str, asset_key: str, store_key: str) -> str:
    """``<item>_<asset><ext>``, in characters that are safe in a header and on a disk."""
    base = store_key.rsplit("/", 1)[-1]
    ext = base[base.rfind(".") :] if "." in base else ""
    name = _UNSAFE_NAME.sub("_", f"{item_id}_{asset_key}{ext}").lstrip(".")
    return name[:255] or "download"


def is_active(media_type: str) -> bool:
    """Whether a browser could render ``media_type`` as a page or run it as code."""
    return bool(ACTIVE_TYPES.match(media_type.strip()))


@dataclass
class AssetGrant:
    """What the gate allows: one asset of one visible item, decided and bound.

    Stream ``store_key``; call ``reserve(n)`` before sending ``n`` bytes and the
    function it returns with the bytes actually sent (settles the quota, audits)."""

    principal: Principal
    item: JSON
    asset_key: str
    asset: JSON
    store_key: str
    action: Action
    decision: Decision
    media_type: str
    filename: str
    _gate: AssetGate = field(repr=False)

    @property
    def collection_id(self) -> str:
        return str(self.item.get("collection"))

    @property
    def item_id(self) -> str:
        return str(self.item.get("id"))

    @property
    def active(self) -> bool:
        return is_active(self.media_type)

    def reserve(self, nbytes: int) -> Callable[[int], None]:
        """Reserve ``nbytes`` against the caller's quota (QuotaExceededError, saying what
        remains, when it does not fit); returns ``done(sent)``, which gives back what was
        not sent and records the grant. Call ``done`` exactly once."""
        reservation = self._gate.reserve_bytes(self.principal, self.collection_id,
                                               self.action, nbytes)  # fmt: skip

        def done(sent: int) -> None:
            try:
                reservation.settle(sent)
            finally:
                self._gate.record(self.principal, self.item, self.asset_key, self.action,
                                  self.decision, sent)  # fmt: skip

        return done


@dataclass
class PictureGrant:
    """What the gate allows for a picture (tile, preview, point, statistics) of one item
    drawn from ``assets``: the combined decision, whose ``max_resolution_m`` bounds it."""

    principal: Principal
    item: JSON
    assets: tuple[str, ...]
    decision: Decision
    _gate: AssetGate = field(repr=False)

    @property
    def min_pixel_m(self) -> float | None:
        """The finest pixel size allowed, or None for full access."""
        d = self.decision
        return d.max_resolution_m if d.kind == "reduced" else None

    def record(self, nbytes: int) -> None:
        """One audit record per asset read; the bytes are shared out between them."""
        share, rest = divmod(nbytes, max(1, len(self.assets)))
        for n, asset in enumerate(self.assets):
            self._gate.record(self.principal, self.item, asset, Action.TILE, self.decision,
                              share + (rest if n == 0 else 0))  # fmt: skip


class AssetGate:
    """The one path for bytes. Built once in ``create_app``; every byte route calls it."""

    def __init__(
        self,
        catalog: CatalogReader,
        policy: AccessPolicy,
        *,
        quotas: QuotaBook | None = None,
        links: LinkVerifier | None = None,
        subjects: LinkSubjects | None = None,
    ) -> None:
        self.catalog = catalog
        self.policy = policy
        self.quotas = quotas
        self.links = links
        self.subjects = subjects

    # --- 1. who -----------------------------------------------------------------------
    def caller(
        self,
        caller: Principal,
        collection_id: str,
        item_id: str,
        asset_key: str,
        query: Mapping[str, str],
    ) -> Principal:
        """The principal a request acts for: the subject of a signed link in ``query``
        (checked, and as that subject is now), else ``caller``."""
        if not any(p in query for p in SIGNATURE_PARAMS):
            return caller
        if self.links is None:
            raise AccessDeniedError("this node does not accept signed links")
        params = {p: query.get(p, "") for p in SIGNATURE_PARAMS}
        signed = self.links.verify(collection_id, item_id, asset_key, params)
        return self.subjects.link_subject(signed) if self.subjects is not None else signed

    # --- 2. visible ---------------------------------------------------------------------
    def item(self, principal: Principal, collection_id: str, item_id: str) -> JSON:
        """The item as ``principal`` may see it; NotFoundError when absent or hidden
        (the same answer for both)."""
        return self.catalog.get_item(
            collection_id, item_id, visible=self.policy.visible_filter(principal)
        )

    # --- 3.-4. bound and decided ---------------------------------------------------------
    def open(
        self,
        principal: Principal,
        collection_id: str,
        item_id: str,
        asset_key: str,
        action: Action | None = None,
    ) -> AssetGrant:
        """An asset's bytes for ``principal``: ``GET /download/...`` and anything else
        that names an asset by ids. NotFoundError (hidden, unknown, not held here, key
        not bound to the item), BytesRefusedError (the policy says no)."""
        check_segment(collection_id, "collection id")
        check_segment(item_id, "item id")
        check_segment(asset_key, "asset key")
        return self.grant(principal, self.item(principal, collection_id, item_id), asset_key,
                          action)  # fmt: skip

    def grant(
        self, principal: Principal, item: JSON, asset_key: str, action: Action | None = None
    ) -> AssetGrant:
        """Like ``open`` for an item already found through ``principal``'s visibility
        filter (a search page, an order)."""
        result = self.try_grant(principal, item, asset_key, action)
        if isinstance(result, AssetGrant):
            return result
        raise result

    def try_grant(
        self, principal: Principal, item: JSON, asset_key: str, action: Action | None = None
    ) -> AssetGrant | NotFoundError | BytesRefusedError:
        """``grant`` answering the refusal instead of raising it (orders skip those)."""
        asset = (item.get("assets") or {}).get(asset_key)
        iid = item.get("id")
        if not isinstance(asset, dict):
            return NotFoundError(f"item {iid!r} has no asset {asset_key!r}")
        key = bound_key(item, asset_key)
        if key is None:
            return NotFoundError(
                f"asset {asset_key!r} of item {iid!r} is not held by this node; "
                "fetch it from its own href"
            )
        act = action or action_for(asset)
        decision = self.policy.decide(principal, item, asset_key, act)
        why = refusal(decision, act, f"asset {asset_key!r} of item {iid!r}")
        if why is not None:
            return BytesRefusedError(why, decision.agreement)
        media = safe_media_type(asset, key)
        return AssetGrant(principal, item, asset_key, asset, key, act, decision, media,
                          safe_file_name(str(iid), asset_key, key), self)  # fmt: skip

    def pictures(
        self,
        principal: Principal,
        item: JSON,
        assets: Sequence[str],
        *,
        count: bool = True,
        check: Callable[[Decision], None] | None = None,
    ) -> PictureGrant:
        """Pictures of ``item`` drawn from ``assets`` (every one must be held for this
        item): 403 naming the agreement when denied; ``check`` may refuse more (a tile
        finer than a reduced decision allows); then, with ``count``, one picture is
        counted against the caller's daily picture quota."""
        decision = self.picture_decision(principal, item, assets)
        if decision.kind == "denied":
            agreement = f" (agreement {decision.agreement!r})" if decision.agreement else ""
            raise BytesRefusedError(
                f"pictures of item {item.get('id')!r}: {decision.reason or 'access is denied'}"
                f"{agreement}",
                decision.agreement,
            )
        if check is not None:
            check(decision)
        if count:
            self.count_picture(principal, str(item.get("collection")))
        return PictureGrant(principal, item, tuple(assets), decision, self)

    def picture_decision(self, principal: Principal, item: JSON, assets: Sequence[str]) -> Decision:
        """The combined decision for a picture of ``assets`` (a mosaic asks per item);
        NotFoundError when one of them is not held for this item."""
        for a in assets:
            if bound_key(item, a) is None:
                raise NotFoundError(f"asset {a!r} of item {item.get('id')!r} is not held here")
        return combine(self.policy.decide(principal, item, a, Action.TILE) for a in assets)

    def picture_grant(
        self, principal: Principal, item: JSON, assets: Sequence[str], decision: Decision
    ) -> PictureGrant:
        """A grant for a decision already taken by ``picture_decision`` (mosaics)."""
        return PictureGrant(principal, item, tuple(assets), decision, self)

    # --- 5. quota -----------------------------------------------------------------------
    def count_picture(self, principal: Principal, collection_id: str) -> None:
        """Count one picture against the caller's daily picture quota (or refuse)."""
        if self.quotas is not None:
            self.quotas.reserve(principal, collection_id, "tiles", 1).settle(1)

    def reserve_bytes(
        self, principal: Principal, collection_id: str, action: Action, nbytes: int
    ) -> Reserved:
        if self.quotas is None or action not in (Action.DOWNLOAD, Action.PROCESS):
            return _NOTHING
        return self.quotas.reserve(principal, collection_id, "bytes", nbytes)

    # --- 6. recorded --------------------------------------------------------------------
    def record(
        self,
        principal: Principal,
        item: JSON,
        asset_key: str,
        action: Action,
        decision: Decision,
        nbytes: int,
    ) -> None:
        """Write one grant to the audit log; never turns a finished send into an error."""
        try:
            self.policy.record(principal, item, asset_key, action, decision, nbytes)
        except Exception:
            log.exception("could not record a grant")


class _Nothing:
    def settle(self, used: int) -> None:
        return None


_NOTHING = _Nothing()


def download_headers(grant: AssetGrant) -> dict[str, str]:
    """Headers that keep served bytes from running as a page of this origin: the checked
    media type, ``nosniff``, a sandboxing CSP, and an attachment disposition."""
    from urllib.parse import quote

    name = grant.filename
    return {
        "Content-Type": grant.media_type,
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox; default-src 'none'",
        "Content-Disposition": f"attachment; filename=\"{name}\"; filename*=UTF-8''{quote(name)}",
    }
