"""Who is asking, when a peer asks: signed requests in, a ``Principal`` out.

A hub that forwards a search says on whose behalf in the signed header
``Eoshare-On-Behalf-Of`` (base64url of ``{"u": user, "m": member, "r": roles}``). This
node believes it only when

* the request is signed by a registered, enabled peer (``signatures``), and
* that peer's ``trusted_members`` lists the member (the per-peer trust setting), and
* the member is known here.

Then the caller is that member's user as this node knows members (its own country, its
own agreements): ``user@peer`` with at most the roles ``viewer``/``analyst`` — a hub can
never make someone an operator or a publisher here. Otherwise the caller is anonymous.
Either way this node's own access module decides what the caller sees, so a peer never
hands out more than it would to that caller directly.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eoshare.access.base import ANONYMOUS, Principal
from eoshare.errors import NotAuthenticatedError
from eoshare.federation.identity import unb64
from eoshare.federation.peers import Peer, PeerRegistry
from eoshare.federation.signatures import ON_BEHALF_OF, SignatureVerifier

FORWARDABLE_ROLES = frozenset({"viewer", "analyst"})


def encode_on_behalf_of(principal: Principal) -> str | None:
    """The header value for a caller, or None for the public (nothing to forward)."""
    if principal.anonymous:
        return None
    doc: dict[str, Any] = {"u": principal.user}
    if principal.member is not None:
        doc["m"] = principal.member
    roles = sorted(principal.roles & FORWARDABLE_ROLES)
    if roles:
        doc["r"] = roles
    raw = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_on_behalf_of(value: str) -> dict[str, Any]:
    try:
        text = value.strip()
        doc = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except ValueError as exc:
        raise NotAuthenticatedError("the forwarded principal is malformed") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("u"), str):
        raise NotAuthenticatedError("the forwarded principal is malformed")
    return doc


@dataclass(frozen=True)
class PeerCaller:
    peer: Peer
    principal: Principal
    # True when the forwarded member was accepted; False: treated as the public
    trusted: bool


class PeerTrust:
    """Built once in ``create_app``; called by the middleware for signed requests."""

    def __init__(
        self,
        registry: PeerRegistry,
        *,
        known_member: Callable[[str], str | bool | None],
        clock_skew_s: int,
        max_ttl_s: int,
    ) -> None:
        """``known_member(code)`` answers the member's country (or True) when it exists
        here, None/False otherwise."""
        self.registry = registry
        self.known_member = known_member
        # the replay cache is the peers database: every process of this node shares it
        self.verifier = SignatureVerifier(
            self._public_key, clock_skew_s=clock_skew_s, max_ttl_s=max_ttl_s, replay=registry
        )

    def _public_key(self, keyid: str) -> bytes | None:
        peer = self.registry.by_fingerprint(keyid)
        if peer is None or peer.public_key is None:
            return None
        return unb64(peer.public_key)

    def authenticate(
        self,
        *,
        method: str,
        authority: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        now: float | None = None,
    ) -> PeerCaller:
        checked = self.verifier.verify(
            method=method,
            authority=authority,
            path=path,
            query=query,
            headers=headers,
            body=body,
            now=now,
        )
        peer = self.registry.by_fingerprint(checked.keyid)
        if peer is None:  # removed between the two reads
            raise NotAuthenticatedError("the request is signed by a node that is not a peer")
        forwarded = headers.get(ON_BEHALF_OF)
        if not forwarded:
            return PeerCaller(peer, ANONYMOUS, trusted=False)
        doc = decode_on_behalf_of(forwarded)
        member = doc.get("m")
        country = self.known_member(member) if isinstance(member, str) else None
        if not isinstance(member, str) or not peer.trusts(member) or not country:
            return PeerCaller(peer, ANONYMOUS, trusted=False)
        roles = doc.get("r") or []
        return PeerCaller(
            peer,
            Principal(
                user=f"{doc['u']}@{peer.name}",
                member=member,
                country=country if isinstance(country, str) else None,
                roles=frozenset(r for r in roles if r in FORWARDABLE_ROLES),
                # no local record: signed links made for this caller are not looked up
                credential="p",
            ),
            trusted=True,
        )
