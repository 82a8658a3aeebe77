"""Helpers of the hostile-input tests (hole 2, 3, 4, 10, 14, 16 of issue 8): a real node
started with ``eoshare serve`` in a subprocess (so a crash of the process is seen, and its
log is a file the tests read), and hostile files written on the fly in temporary folders.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
from affine import Affine

from eoshare.catalog import open_catalog
from eoshare.ingest.collections import minimal_collection
from live import free_port

ADMIN = "security-input-operator-token"
COLLECTION = "hostile-uploads"
SECRET_VALUE = 173  # every pixel of the "secret" raster a VRT tries to reach


@dataclass
class ServedNode:
    url: str
    data_dir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN}"}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def prepare_data_dir(data_dir: Path, collections: tuple[str, ...] = (COLLECTION,)) -> None:
    catalog = open_catalog(f"sqlite:///{data_dir / 'catalog.db'}")
    try:
        for cid in collections:
            catalog.create_collection(minimal_collection(cid, made_by="security tests"))
    finally:
        catalog.close()


@contextlib.contextmanager
def serve(
    data_dir: Path, env: dict[str, str] | None = None, *, args: tuple[str, ...] = ()
) -> Iterator[ServedNode]:
    """``eoshare serve`` on a free 127.0.0.1 port (uvicorn's access log on, as an operator
    runs it); its output goes to ``data_dir/server.log``."""
    port = free_port()
    server_env = {
        k: v for k, v in os.environ.items() if not k.startswith("EOSHARE_") and k != "PYTHONPATH"
    }
    server_env.update(
        {"EOSHARE_DATA_DIR": str(data_dir), "EOSHARE_API__ADMIN_TOKEN": ADMIN, **(env or {})}
    )
    log_path = data_dir / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "eoshare.cli", "serve", "--host", "127.0.0.1",
             "--port", str(port), "--data-dir", str(data_dir), *args],
            env=server_env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        node = ServedNode(url, data_dir, proc, log_path)
        try:
            deadline = time.monotonic() + 90
            while True:
                if proc.poll() is not None:
                    pytest.fail("the server exited:\n" + node.log(), pytrace=False)
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(url + "/", timeout=5).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    pytest.fail("the server did not answer within 90 s", pytrace=False)
                time.sleep(0.2)
            yield node
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --- hostile rasters ------------------------------------------------------------------
@contextlib.contextmanager
def _writing() -> Iterator[None]:
    # affine's PendingDeprecationWarning is raised inside rasterio, not in our code
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"Use `@` matmul", category=PendingDeprecationWarning
        )
        yield


def geotiff(path: Path, value: int = 1, size: int = 64) -> Path:
    """A small, valid, georeferenced GeoTIFF filled with ``value``."""
    profile = {
        "driver": "GTiff", "width": size, "height": size, "count": 1, "dtype": "uint8",
        "crs": "EPSG:4326", "transform": Affine(0.01, 0.0, 30.0, 0.0, -0.01, 10.0),
    }  # fmt: skip
    with _writing(), rasterio.open(path, "w", **profile) as ds:
        ds.write(np.full((1, size, size), value, dtype="uint8"))
    return path


def vrt_simple_source(source: str, size: int = 64) -> bytes:
    """A VRT (to be named ``*.tif``) whose one band reads ``source`` (a path or a
    ``/vsicurl/`` URL)."""
    return (
        f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}">'
        "<SRS>EPSG:4326</SRS><GeoTransform>30, 0.01, 0, 10, 0, -0.01</GeoTransform>"
        '<VRTRasterBand dataType="Byte" band="1"><SimpleSource>'
        f'<SourceFilename relativeToVRT="0">{source}</SourceFilename>'
        "<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>"
    ).encode()


def vrt_raw_file(target: Path, width: int = 64) -> bytes:
    """A VRT whose band is the raw bytes of any file (e.g. the node's signing keys)."""
    rows = max(1, target.stat().st_size // width)
    return (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{rows}">'
        "<SRS>EPSG:4326</SRS><GeoTransform>30, 0.01, 0, 10, 0, -0.01</GeoTransform>"
        '<VRTRasterBand dataType="Byte" band="1" subClass="VRTRawRasterBand">'
        f'<SourceFilename relativetoVRT="0">{target}</SourceFilename>'
        f"<ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>{width}"
        "</LineOffset></VRTRasterBand></VRTDataset>"
    ).encode()


def huge_tiff(path: Path, side: int = 1_000_000) -> Path:
    """A BigTIFF that declares ``side`` x ``side`` pixels in a few kilobytes (sparse
    strips: no pixel is written)."""
    with _writing(), rasterio.open(
        path, "w", driver="GTiff", width=side, height=side, count=1, dtype="uint8",
        crs="EPSG:4326", transform=Affine(1e-5, 0.0, 30.0, 0.0, -1e-5, 10.0),
        tiled=False, blockysize=side // 50, sparse_ok=True, BIGTIFF="YES",
    ):  # fmt: skip
        pass
    return path


def bomb_tiff(path: Path, side: int = 30_000) -> Path:
    """A deflated, sparse GeoTIFF: 900 MB of declared pixels in ~30 kB."""
    with _writing(), rasterio.open(
        path, "w", driver="GTiff", width=side, height=side, count=1, dtype="uint8",
        crs="EPSG:4326", transform=Affine(1e-4, 0.0, 30.0, 0.0, -1e-4, 10.0),
        tiled=True, blockxsize=512, blockysize=512, compress="deflate", sparse_ok=True,
    ):  # fmt: skip
        pass
    return path


def tiny_tiff_header(width: int, height: int) -> bytes:
    """A hand-made classic TIFF header declaring width x height (for unit tests)."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1),
               (262, 3, 1, 1), (273, 4, 1, 0), (277, 3, 1, 1), (278, 4, 1, height),
               (279, 4, 1, 0)]  # fmt: skip
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        ifd += struct.pack("<HHII", tag, typ, count, value)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)


# --- a listener that records whether anyone connected ---------------------------------
@dataclass
class Listener:
    port: int
    hits: list[bytes] = field(default_factory=list)
    _sock: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/secret.tif"


@contextlib.contextmanager
def listener() -> Iterator[Listener]:
    """A TCP listener on 127.0.0.1 that records every connection (and answers 404)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.2)
    rec = Listener(sock.getsockname()[1], _sock=sock)
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                with contextlib.suppress(OSError):
                    rec.hits.append(conn.recv(4096))
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()


# --- uploads --------------------------------------------------------------------------
def upload(
    http: httpx.Client,
    headers: dict[str, str],
    name: str,
    data: bytes,
    collection: str = COLLECTION,
) -> httpx.Response:
    """Send ``data`` through the resumable upload API and complete it; the response of
    ``complete``."""
    start = http.post(
        "/uploads",
        json={"collection": collection, "filename": name, "size": len(data),
              "sha256": hashlib.sha256(data).hexdigest()},
        headers=headers,
    )  # fmt: skip
    assert start.status_code == 201, start.text
    status = start.json()
    step = status["chunk_bytes"]
    for i in range(status["chunk_count"]):
        chunk = data[i * step : (i + 1) * step]
        r = http.put(f"/uploads/{status['id']}/chunks/{i}", content=chunk, headers=headers)
        assert r.status_code == 200, r.text
    return http.post(f"/uploads/{status['id']}/complete", headers=headers)


def stored_files(data_dir: Path) -> list[Path]:
    store = data_dir / "store"
    return sorted(p for p in store.rglob("*") if p.is_file()) if store.exists() else []


# --- a node that trusts one OIDC provider (crafted tokens) ----------------------------
ISSUER = "https://idp.security.example"
AUDIENCE = "eoshare-security"


@dataclass
class OidcNode:
    node: ServedNode
    private_pem: bytes
    kid: str = "sec-key-1"

    def token(self, claims: dict[str, object]) -> str:
        import jwt

        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600, "sub": "eve",
                **claims}  # fmt: skip
        return jwt.encode(body, self.private_pem, algorithm="RS256", headers={"kid": self.kid})


@pytest.fixture(scope="session")
def oidc_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcNode]:
    """One node for the crafted-input tests (holes 3 and 10): an OIDC provider whose key
    the tests hold, and one collection."""
    import json

    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    data_dir = tmp_path_factory.mktemp("crafted-input")
    prepare_data_dir(data_dir)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "sec-key-1", "use": "sig", "alg": "RS256"})
    jwks = data_dir / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    env = {
        "EOSHARE_ACCESS__OIDC": json.dumps(
            [{"issuer": ISSUER, "audience": AUDIENCE, "jwks_file": str(jwks),
              "member_claim": "agency", "roles_claim": "roles"}]
        )
    }  # fmt: skip
    with serve(data_dir, env) as node:
        yield OidcNode(node, pem)
