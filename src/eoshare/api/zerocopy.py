"""Zero-copy file bodies for uvicorn: the ASGI *Zero Copy Send* extension.

uvicorn (0.54) copies every body chunk through Python: a download read with ``pread``
into a ``bytes`` and written to the socket costs two copies and a thread hop per chunk,
where nginx hands the file to the kernel with ``sendfile(2)``. This module gives uvicorn's
httptools protocol the ASGI extension ``http.response.zerocopysend``
(https://asgi.readthedocs.io/en/latest/extensions.html#zero-copy-send): an application that
finds it in ``scope["extensions"]`` may send::

    {"type": "http.response.zerocopysend", "file": f, "offset": 0, "count": n,
     "more_body": False}

and the bytes go from the page cache to the socket with ``os.sendfile``, called in
worker threads of a pool of their own (a cold file blocks a thread, never the event
loop); a thread sends while the client takes bytes, for a short turn, and a client that
stalls is waited for in the event loop (a slow client holds no thread). The
number of bytes the kernel took is written back into the message as ``"sent"`` (the
audit records what was actually sent; a client that goes away mid-file is seen there).

The ``"file"`` may also be a connected socket (the body of a response from an S3 server,
``eoshare.storage.s3raw``): then ``count`` bytes are moved from it to the client's
socket with ``os.splice`` through a pipe, the kernel passing pages from one socket to the
other without copying them through Python (``offset`` must be 0); ``"sent"`` is again
what the client's socket took.

Only plain TCP connections get the extension (TLS needs the bytes in user space). The
access decision, quota and audit stay in the application (``AssetGate``): the server only
moves the bytes of a file the application already opened.

``protocol()`` is what ``eoshare serve`` passes to ``uvicorn.run(http=...)``; it falls back
to uvicorn's own choice when httptools is missing or uvicorn's internals differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import select
import socket
import stat
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

EXTENSION = "http.response.zerocopysend"
# at most this much per sendfile call: the kernel takes what fits in the socket buffer
_MAX_CALL = 16 * 1024 * 1024
# a client that takes nothing for this long is treated as gone
IDLE_TIMEOUT_S = 60.0

Message = dict[str, Any]
Send = Callable[[Message], Awaitable[None]]


def _fileno(file: Any) -> int:
    if isinstance(file, int):
        return file
    fd: int = file.fileno()
    return fd


async def _writable(loop: asyncio.AbstractEventLoop, fd: int, timeout: float) -> bool:
    """Wait until ``fd`` (a dup of the connection's socket) can take more bytes."""
    waiter: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not waiter.done():
            waiter.set_result(None)

    loop.add_writer(fd, ready)
    try:
        await asyncio.wait_for(waiter, timeout)
    except TimeoutError:
        return False
    finally:
        loop.remove_writer(fd)
    return True


def _limiter() -> anyio.CapacityLimiter:
    """The threads that run sendfile: a pool of their own, so that downloads never take
    the threads that synchronous routes run in (one per event loop)."""
    loop = asyncio.get_running_loop()
    limiter = _LIMITERS.get(loop)
    if limiter is None:
        limiter = _LIMITERS[loop] = anyio.CapacityLimiter(SENDFILE_THREADS)
    return limiter


_LIMITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)
SENDFILE_THREADS = 32
# one turn of a worker thread: it sends while the socket takes bytes (waiting up to
# _STALL_MS for room), then gives the thread back after _TURN_S at most
_TURN_S = 0.25
_STALL_MS = 20


def _send_some(sock_fd: int, in_fd: int, offset: int, count: int) -> tuple[int, str]:
    """In a worker thread: sendfile until done, the client stalls or the turn is over.
    Returns (bytes sent, "done" | "blocked" | "gone" | "eof")."""
    sent = 0
    started = time.monotonic()
    poller: select.poll | None = None
    while sent < count:
        try:
            n = os.sendfile(sock_fd, in_fd, offset + sent, min(count - sent, _MAX_CALL))
        except BlockingIOError:
            if poller is None:
                poller = select.poll()
                poller.register(sock_fd, select.POLLOUT)
            if time.monotonic() - started > _TURN_S or not poller.poll(_STALL_MS):
                return sent, "blocked"
            continue
        except OSError:  # the client went away (EPIPE, ECONNRESET), or I/O failed
            return sent, "gone"
        if n == 0:  # the file ended before count
            return sent, "eof"
        sent += n
    return sent, "done"


def _cached(fd: int, offset: int, count: int) -> bool:
    """Whether the first and last bytes of ``[offset, offset+count)`` are in the page
    cache (a read with RWF_NOWAIT, which never waits for the disk): then sendfile will
    not block the event loop on the disk (readahead fills what lies between)."""
    buf = bytearray(1)
    try:
        for pos in (offset, offset + count - 1):
            if os.preadv(fd, [buf], pos, os.RWF_NOWAIT) != 1:
                return False
    except (OSError, AttributeError, ValueError):  # not cached, or not supported here
        return False
    return True


# what one sendfile call from the event loop may send (a socket takes less anyway)
_LOOP_CALL = 4 * 1024 * 1024


async def _send_from_loop(
    loop: asyncio.AbstractEventLoop, sock_fd: int, watch_fd: int, in_fd: int, offset: int,
    count: int,
) -> tuple[int, str]:  # fmt: skip
    """Send from writable callbacks of the event loop, as nginx does: one sendfile per
    wake-up, no task switch and no thread, while the bytes are in the page cache.
    Returns (bytes sent, "done" | "uncached" | "gone" | "eof" | "idle")."""
    done: asyncio.Future[str] = loop.create_future()
    sent = 0
    last = time.monotonic()

    def finish(state: str) -> None:
        if not done.done():
            done.set_result(state)

    def step() -> None:
        nonlocal sent, last
        while not done.done():
            want = min(count - sent, _LOOP_CALL)
            if want <= 0:
                return finish("done")
            if not _cached(in_fd, offset + sent, want):
                return finish("uncached")
            try:
                n = os.sendfile(sock_fd, in_fd, offset + sent, want)
            except BlockingIOError:
                return None  # full: the next wake-up goes on
            except OSError:  # the client went away (EPIPE, ECONNRESET)
                return finish("gone")
            if n == 0:  # the file ended before count
                return finish("eof")
            sent += n
            last = time.monotonic()
            if n < want:
                return None
        return None

    def idle() -> None:
        if not done.done():
            if time.monotonic() - last > IDLE_TIMEOUT_S:
                finish("idle")
            else:
                timer[0] = loop.call_later(1.0, idle)

    timer = [loop.call_later(1.0, idle)]
    loop.add_writer(watch_fd, step)
    try:
        state = await done
    finally:
        loop.remove_writer(watch_fd)
        timer[0].cancel()
    return sent, state


async def sendfile(sock_fd: int, in_fd: int, offset: int, count: int) -> int:
    """Send ``count`` bytes of ``in_fd`` from ``offset`` to the non-blocking socket
    ``sock_fd``; returns how many the kernel took (fewer when the client went away, took
    nothing for IDLE_TIMEOUT_S, or the file is shorter than asked).

    Bytes already in the page cache are sent from the event loop, as nginx does (no
    thread hop: one wake-up per socket buffer); others in a worker thread's turn, so
    that the event loop never waits for the disk."""
    loop = asyncio.get_running_loop()
    sent = 0
    # the transport owns sock_fd in the event loop and closes it when the client goes
    # away, and the number may then name another file at once (a database): sendfile
    # writes to a duplicate of our own, which keeps the socket open until we are done
    watch_fd = os.dup(sock_fd)
    try:
        while sent < count:
            if _cached(in_fd, offset + sent, min(count - sent, _LOOP_CALL)):
                n, state = await _send_from_loop(
                    loop, watch_fd, watch_fd, in_fd, offset + sent, count - sent
                )
            else:
                n, state = await anyio.to_thread.run_sync(
                    _send_some, watch_fd, in_fd, offset + sent, count - sent, limiter=_limiter()
                )
            sent += n
            if state in ("gone", "eof", "idle"):
                break
            if state == "blocked" and not await _writable(loop, watch_fd, IDLE_TIMEOUT_S):
                break  # a slow client, waited for in the event loop (no thread held)
    finally:
        os.close(watch_fd)
    return sent


# the pipe between the two sockets of a splice: 1 MiB (Linux's default maximum for an
# unprivileged process). The kernel refuses more, and a non-root user's pipes beyond
# fs.pipe-user-pages-soft (64 MiB: 64 such downloads at once) get 2 pages: still correct,
# with more calls per byte; raise that sysctl on a node with many concurrent downloads
PIPE_BYTES = 1024 * 1024
_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
# splice(2) and pipe sizes are Linux's; elsewhere socket bodies are not offered
CAN_SPLICE = hasattr(os, "splice") and hasattr(fcntl, "F_SETPIPE_SZ")


# the client's socket buffer for a spliced body: the kernel caps it (net.core.wmem_max,
# doubled); more room between the node and the client lets the S3 server run ahead while
# the node waits for a core (one stream, 2 busy cores: ~0.8 -> ~0.9 of direct reading)
SPLICE_SNDBUF = 8 * 1024 * 1024


def _grow_send_buffer(fd: int) -> None:
    """Raise the socket's send buffer to SPLICE_SNDBUF (never lower it)."""
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) < SPLICE_SNDBUF:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SPLICE_SNDBUF)


def _is_socket(fd: int) -> bool:
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False


async def splice(sock_fd: int, in_fd: int, count: int) -> int:
    """Move ``count`` bytes from the non-blocking socket ``in_fd`` to the non-blocking
    socket ``sock_fd`` through a pipe (``splice(2)``: pages pass from one socket to the
    other, no copy in user space), from callbacks of the event loop; returns how many the
    client's socket took (fewer when the client went away, the source ended early or
    failed, or either side was idle for IDLE_TIMEOUT_S)."""
    loop = asyncio.get_running_loop()
    pipe_r, pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    with contextlib.suppress(OSError):
        fcntl.fcntl(pipe_w, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    capacity = fcntl.fcntl(pipe_w, fcntl.F_GETPIPE_SZ)
    # the transport owns sock_fd in the event loop and closes it when the client goes
    # away, and the number may then name another file at once (a database): every call
    # goes to duplicates of our own, which keep the sockets open until we are done
    watch_out = os.dup(sock_fd)
    watch_in = os.dup(in_fd)
    _grow_send_buffer(watch_out)
    done: asyncio.Future[str] = loop.create_future()
    taken = 0  # bytes read from the source into the pipe
    sent = 0  # bytes the client's socket took out of the pipe
    last = time.monotonic()
    reading = writing = False

    def finish(state: str) -> None:
        if not done.done():
            done.set_result(state)

    def pump() -> None:
        nonlocal taken, sent, last, reading, writing
        progress = True
        while progress and not done.done():
            progress = False
            held = taken - sent
            if taken < count and held < capacity:
                try:
                    n = os.splice(watch_in, pipe_w, min(count - taken, capacity - held),
                                  flags=_SPLICE_FLAGS)  # fmt: skip
                except BlockingIOError:  # nothing to read yet (or the pipe is full)
                    pass
                except OSError:  # the source failed (reset)
                    return finish("source")
                else:
                    if n == 0 and held == 0:  # the source ended before count
                        return finish("eof")
                    taken += n
                    progress = progress or n > 0
            held = taken - sent
            if held:
                try:
                    n = os.splice(pipe_r, watch_out, held, flags=_SPLICE_FLAGS)
                except BlockingIOError:  # the client's socket is full
                    pass
                except OSError:  # the client went away (EPIPE, ECONNRESET)
                    return finish("gone")
                else:
                    sent += n
                    progress = progress or n > 0
            if progress:
                last = time.monotonic()
            if sent == count:
                return finish("done")
        # wait for the source only when the pipe is empty (a full pipe also answers
        # EAGAIN), for the client only when the pipe holds bytes
        want_in = taken == sent and taken < count
        want_out = taken > sent
        if want_in != reading:
            (loop.add_reader(watch_in, pump) if want_in else loop.remove_reader(watch_in))
            reading = want_in
        if want_out != writing:
            (loop.add_writer(watch_out, pump) if want_out else loop.remove_writer(watch_out))
            writing = want_out
        return None

    def idle() -> None:
        if not done.done():
            if time.monotonic() - last > IDLE_TIMEOUT_S:
                finish("idle")
            else:
                timer[0] = loop.call_later(1.0, idle)

    timer = [loop.call_later(1.0, idle)]
    try:
        pump()
        state = await done
    finally:
        timer[0].cancel()
        if reading:
            loop.remove_reader(watch_in)
        if writing:
            loop.remove_writer(watch_out)
        for fd in (watch_in, watch_out, pipe_r, pipe_w):
            os.close(fd)
    if state not in ("done", "eof"):
        log.info("splice stopped", extra={"state": state, "bytes": sent})
    return sent


async def _drained(transport: asyncio.WriteTransport) -> None:
    """Wait until the transport has written everything it buffered (the headers), so
    that sendfile's bytes follow them on the wire."""
    waited = 0.0
    while transport.get_write_buffer_size() and not transport.is_closing():
        await asyncio.sleep(0.001)
        waited += 0.001
        if waited > IDLE_TIMEOUT_S:
            raise OSError("the client takes no bytes")


def _wrap(cycle: Any) -> None:
    """Give one request/response cycle the extension (scope and send)."""
    transport = cycle.transport
    sock = transport.get_extra_info("socket")
    if sock is None or transport.get_extra_info("sslcontext") is not None:
        return
    try:
        if sock.fileno() < 0:
            return
    except (AttributeError, OSError):
        return
    plain: Send = cycle.send

    async def send(message: Message) -> None:
        if message.get("type") != EXTENSION:
            await plain(message)
            return
        if not cycle.response_started or cycle.response_complete:
            raise RuntimeError(f"'{EXTENSION}' is only valid inside a response body")
        more_body = bool(message.get("more_body", False))
        in_fd = _fileno(message["file"])
        offset = int(message.get("offset") or 0)
        from_socket = _is_socket(in_fd)
        count = message.get("count")
        if count is None:
            if from_socket:
                raise RuntimeError(f"'{EXTENSION}' from a socket needs a count")
            count = os.fstat(in_fd).st_size - offset
        count = int(count)
        if from_socket and offset:
            raise RuntimeError(f"'{EXTENSION}' from a socket cannot start at an offset")
        message["sent"] = 0
        if cycle.flow.write_paused and not cycle.disconnected:
            await cycle.flow.drain()
        if cycle.disconnected:
            return
        if cycle.chunked_encoding or cycle.scope.get("method") == "HEAD":
            # no length to send raw bytes under: copy through the ordinary path
            if from_socket:
                await _copy_socket(plain, in_fd, count, more_body, message)
            else:
                await _copy(plain, in_fd, offset, count, more_body, message)
            return
        if count > cycle.expected_content_length:
            raise RuntimeError("Response content longer than Content-Length")
        # the socket's number now, while the transport still holds it open (checked just
        # above, with no wait since), kept open by a duplicate of our own until we are
        # done: the transport closes its own when the client goes away
        sock_fd = -1
        try:
            if not transport.is_closing() and sock.fileno() >= 0:
                sock_fd = os.dup(sock.fileno())
            if sock_fd < 0:
                sent = 0
            else:
                await _drained(transport)
                if not count:
                    sent = 0
                elif from_socket:
                    sent = await splice(sock_fd, in_fd, count)
                else:
                    sent = await sendfile(sock_fd, in_fd, offset, count)
        except OSError:
            sent = 0
        finally:
            if sock_fd >= 0:
                os.close(sock_fd)
        message["sent"] = sent
        cycle.expected_content_length -= sent
        if sent < count:
            # the client went away or stalled (or the file shrank): this response cannot
            # be finished; close the connection, as uvicorn does for a failed body
            cycle.disconnected = True
            cycle.keep_alive = False
            cycle.message_event.set()
            transport.close()
            return
        if not more_body:
            await plain({"type": "http.response.body", "body": b"", "more_body": False})

    cycle.send = send
    extensions = cycle.scope.setdefault("extensions", {})
    extensions[EXTENSION] = {}


async def _copy(
    plain: Send, in_fd: int, offset: int, count: int, more_body: bool, message: Message
) -> None:
    sent = 0
    while sent < count:
        chunk = await anyio.to_thread.run_sync(
            os.pread, in_fd, min(4 * 1024 * 1024, count - sent), offset + sent
        )
        if not chunk:
            break
        await plain({"type": "http.response.body", "body": chunk, "more_body": True})
        sent += len(chunk)
    message["sent"] = sent
    if not more_body:
        await plain({"type": "http.response.body", "body": b"", "more_body": False})


async def _copy_socket(
    plain: Send, in_fd: int, count: int, more_body: bool, message: Message
) -> None:
    loop = asyncio.get_running_loop()
    sent = 0
    with socket.socket(fileno=os.dup(in_fd)) as source:
        source.setblocking(False)
        while sent < count:
            chunk = await loop.sock_recv(source, min(4 * 1024 * 1024, count - sent))
            if not chunk:
                break
            await plain({"type": "http.response.body", "body": chunk, "more_body": True})
            sent += len(chunk)
    message["sent"] = sent
    if not more_body:
        await plain({"type": "http.response.body", "body": b"", "more_body": False})


def protocol() -> Any:
    """uvicorn's ``http=`` argument: its httptools protocol with zero-copy file bodies,
    or ``"auto"`` where that cannot be built (no httptools, other uvicorn internals)."""
    if not hasattr(HttpToolsProtocol, "_start_asgi_task"):
        log.warning("this uvicorn has no _start_asgi_task: zero-copy downloads are off")
        return "auto"
    return ZeroCopyHttpToolsProtocol


class ZeroCopyHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with ``http.response.zerocopysend``."""

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        try:
            _wrap(cycle)
        except Exception:  # never let the extension break a request
            log.exception("zero-copy setup failed; the response is sent normally")
        super()._start_asgi_task(cycle, app)
