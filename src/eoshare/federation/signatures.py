"""Node-to-node request signatures: the Ed25519 subset of HTTP Message Signatures
(RFC 9421) with Content-Digest (RFC 9530).

A signed request carries::

    Content-Digest: sha-256=:<base64>:                         (when it has a body)
    Signature-Input: eoshare=("@method" "@authority" "@path" "@query" "content-digest"
        "eoshare-on-behalf-of");created=1767225600;expires=1767225660;
        nonce="<random>";alg="ed25519";keyid="SHA256:<fingerprint>"
    Signature: eoshare=:<base64 Ed25519 signature of the signature base>:

The signature base is built as RFC 9421 section 2.5 says: one line per covered component
(``"name": value``) and a last ``"@signature-params": ...`` line. ``@authority``,
``@path`` and ``@query`` are covered rather than ``@target-uri`` so that TLS ended at a
proxy (http inside, https outside) does not break the signature.

The verifier refuses (``NotAuthenticatedError``, a 401): an unknown ``keyid``; a bad
signature; a missing component that the request has (a body, a forwarded principal); a
``created`` further than the clock-skew tolerance in the future or older than the longest
lifetime plus that tolerance; an ``expires`` in the past (beyond the tolerance) or too far
after ``created``; a nonce seen before within the window (replay); a body that does not
match its digest.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from eoshare.errors import NotAuthenticatedError
from eoshare.federation.identity import NodeIdentity, unb64, verify_ed25519

LABEL = "eoshare"
ON_BEHALF_OF = "eoshare-on-behalf-of"
BASE_COMPONENTS = ("@method", "@authority", "@path", "@query")
_INPUT = re.compile(r"^\s*([A-Za-z][\w-]*)=\(([^)]*)\)(.*)$")
_PARAM = re.compile(r';\s*([a-z][\w-]*)=("(?:[^"\\]|\\.)*"|-?\d+)')
_SIG = re.compile(r"^\s*([A-Za-z][\w-]*)=:([A-Za-z0-9+/=]*):\s*$")


def content_digest(body: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def _query(query: str) -> str:
    return "?" + query


def signature_base(
    method: str,
    authority: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    components: tuple[str, ...],
    params: str,
) -> bytes:
    values = {
        "@method": method.upper(),
        "@authority": authority.lower(),
        "@path": path or "/",
        "@query": _query(query),
    }
    lines = []
    for name in components:
        value = values[name] if name.startswith("@") else headers[name]
        lines.append(f'"{name}": {value.strip()}')
    lines.append(f'"@signature-params": {params}')
    return "\n".join(lines).encode()


def sign_request(
    identity: NodeIdentity,
    *,
    method: str,
    authority: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes = b"",
    ttl_s: int = 60,
    now: float | None = None,
) -> dict[str, str]:
    """The headers to add to a request: Content-Digest (with a body), Signature-Input,
    Signature. ``headers`` are the other headers sent (lower-case names); a forwarded
    principal (``eoshare-on-behalf-of``) among them is covered."""
    created = int(time.time() if now is None else now)
    out: dict[str, str] = {}
    hdrs = {k.lower(): v for k, v in headers.items()}
    components = list(BASE_COMPONENTS)
    if body:
        out["content-digest"] = hdrs["content-digest"] = content_digest(body)
        components.append("content-digest")
    if ON_BEHALF_OF in hdrs:
        components.append(ON_BEHALF_OF)
    inner = " ".join(f'"{c}"' for c in components)
    params = (
        f"({inner});created={created};expires={created + ttl_s};"
        f'nonce="{secrets.token_urlsafe(16)}";alg="ed25519";keyid="{identity.fingerprint}"'
    )
    base = signature_base(method, authority, path, query, hdrs, tuple(components), params)
    out["signature-input"] = f"{LABEL}={params}"
    out["signature"] = f"{LABEL}=:{base64.b64encode(identity.sign(base)).decode()}:"
    return out


class Replay(Protocol):
    """Where nonces are kept: ``first_time`` is False for a nonce seen and not expired."""

    def first_time(self, key: str, until: float, now: float) -> bool: ...


class ReplayCache:
    """Nonces seen within their signature's lifetime, in this process only (tests, the
    CLI). A node uses the peers database (``PeerRegistry.first_time``), which all its
    processes share."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self.max_entries = max_entries

    def first_time(self, key: str, until: float, now: float) -> bool:
        with self._lock:
            if len(self._seen) >= self.max_entries:
                self._seen = {k: t for k, t in self._seen.items() if t >= now}
                if len(self._seen) >= self.max_entries:
                    # under a flood, refuse rather than forget (a replay must never pass)
                    return False
            expiry = self._seen.get(key)
            if expiry is not None and expiry >= now:
                return False
            self._seen[key] = until
            return True


@dataclass(frozen=True)
class VerifiedSignature:
    keyid: str
    created: int
    expires: int
    covered: tuple[str, ...]


@dataclass
class SignatureVerifier:
    """Checks signed requests. ``public_key`` maps a keyid (fingerprint) to the raw
    public key of a registered peer, or None when it is not one."""

    public_key: Callable[[str], bytes | None]
    clock_skew_s: int = 120
    max_ttl_s: int = 300
    replay: Replay | None = None

    def __post_init__(self) -> None:
        if self.replay is None:
            self.replay = ReplayCache()

    def verify(
        self,
        *,
        method: str,
        authority: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes = b"",
        now: float | None = None,
    ) -> VerifiedSignature:
        now = time.time() if now is None else now
        hdrs = {k.lower(): v for k, v in headers.items()}
        raw_input = hdrs.get("signature-input", "")
        m = _INPUT.match(raw_input)
        s = _SIG.match(hdrs.get("signature", ""))
        if m is None or s is None or m.group(1) != s.group(1):
            raise NotAuthenticatedError("the request signature is malformed")
        components = tuple(c.strip('"') for c in m.group(2).split())
        params = {k: v.strip('"') for k, v in _PARAM.findall(m.group(3))}
        keyid = params.get("keyid", "")
        if params.get("alg", "ed25519") != "ed25519":
            raise NotAuthenticatedError("only ed25519 request signatures are accepted")
        for name in BASE_COMPONENTS:
            if name not in components:
                raise NotAuthenticatedError(f"the request signature does not cover {name}")
        if body and "content-digest" not in components:
            raise NotAuthenticatedError("the request signature does not cover its body")
        if ON_BEHALF_OF in hdrs and ON_BEHALF_OF not in components:
            raise NotAuthenticatedError("the request signature does not cover the principal")
        for name in components:
            if not name.startswith("@") and name not in hdrs:
                raise NotAuthenticatedError(f"a signed header is missing: {name}")
            if name.startswith("@") and name not in BASE_COMPONENTS:
                raise NotAuthenticatedError(f"unsupported signature component {name}")
        try:
            created, expires = int(params["created"]), int(params["expires"])
        except (KeyError, ValueError) as exc:
            raise NotAuthenticatedError("the request signature needs created and expires") from exc
        nonce = params.get("nonce", "")
        if not nonce:
            raise NotAuthenticatedError("the request signature needs a nonce")
        skew = self.clock_skew_s
        if created > now + skew:
            raise NotAuthenticatedError(
                f"the request signature was made {created - now:.0f} s in the future: "
                "check the clocks of both nodes"
            )
        if expires < now - skew or created < now - skew - self.max_ttl_s:
            raise NotAuthenticatedError(
                "the request signature has expired: check the clocks of both nodes"
            )
        if expires - created > self.max_ttl_s or expires <= created:
            raise NotAuthenticatedError("the request signature's lifetime is not acceptable")
        public = self.public_key(keyid)
        if public is None:
            raise NotAuthenticatedError("the request is signed by a node that is not a peer")
        try:
            signature = unb64(s.group(2))
        except ValueError as exc:
            raise NotAuthenticatedError("the request signature is malformed") from exc
        base = signature_base(
            method, authority, path, query, hdrs, components, raw_input.split("=", 1)[1].strip()
        )
        if not verify_ed25519(public, signature, base):
            raise NotAuthenticatedError("the request signature is not valid")
        if "content-digest" in components and hdrs["content-digest"] != content_digest(body):
            raise NotAuthenticatedError("the request body does not match its Content-Digest")
        assert self.replay is not None
        if not self.replay.first_time(f"{keyid} {nonce}", expires + skew, now):
            raise NotAuthenticatedError("the request signature was already used (replay)")
        return VerifiedSignature(keyid, created, expires, components)
