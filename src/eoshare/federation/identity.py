"""A node's identity: an Ed25519 key pair made on first start and kept in the data dir.

The public half is published at ``/.well-known/eoshare-node`` together with the node's
name and member. Operators of other nodes check its *fingerprint* when they register it
as a peer, as they would an SSH host key: ``SHA256:`` + unpadded base64 of the SHA-256 of
the raw 32-byte public key. The fingerprint is also the ``keyid`` of every request the
node signs (see ``signatures``).
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from eoshare.errors import InvalidRequestError, StorageError

WELL_KNOWN_PATH = "/.well-known/eoshare-node"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError as exc:
        raise InvalidRequestError("not valid base64") from exc


def fingerprint_of(public_raw: bytes) -> str:
    """``SHA256:<base64>`` of a raw Ed25519 public key (as ``ssh-keygen -l`` prints)."""
    return "SHA256:" + b64(hashlib.sha256(public_raw).digest()).rstrip("=")


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    raw = unb64(text)
    if len(raw) != 32:
        raise InvalidRequestError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def verify_ed25519(public_raw: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class NodeIdentity:
    """This node's signing key, name and member."""

    private_key: Ed25519PrivateKey
    name: str
    member: str | None = None

    @property
    def public_raw(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.public_raw)

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)

    def document(self, base_url: str) -> dict[str, Any]:
        """What ``/.well-known/eoshare-node`` answers."""
        return {
            "type": "eoshare-node",
            "name": self.name,
            "member": self.member,
            "url": base_url,
            "public_key": {"alg": "ed25519", "raw": b64(self.public_raw)},
            "fingerprint": self.fingerprint,
            "signatures": "RFC 9421 HTTP Message Signatures, alg ed25519, keyid = fingerprint",
            # this node's clock as it answers (peers' health checks compare it with theirs)
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }


def load_or_create_identity(key_file: Path, *, name: str, member: str | None) -> NodeIdentity:
    """Read the node key, or make one on first start (written 0600, atomically)."""
    try:
        if key_file.exists():
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise InvalidRequestError(f"{key_file} is not an Ed25519 private key")
            return NodeIdentity(key, name, member)
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        tmp = key_file.with_name(key_file.name + f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        try:
            # two processes starting at once: the first key written wins
            os.link(tmp, key_file)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        return load_or_create_identity(key_file, name=name, member=member)
    except ValueError as exc:
        raise InvalidRequestError(f"{key_file} is not a readable private key: {exc}") from exc
    except OSError as exc:
        raise StorageError(f"cannot read or write the node key {key_file}: {exc}") from exc
