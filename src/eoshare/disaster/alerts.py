"""Alerts on new data, for every signed-in user: a subscription is an area (optional), a
CQL2 filter (optional) and collections (optional, all by default); delivery by webhook
and by server-sent events (``/alerts/stream``).

* Every catalogue write, in any process, lands in the disaster database's
  ``item_events`` (``ObservedCatalog`` -> ``ItemEventLog``); the server's alert worker
  reads them within a fraction of a second.
* For each batch and each subscription, ONE catalogue search decides the matches: the new
  ids, the subscription's collections, area and filter, AND the subscriber's visibility
  filter at that moment (``AccessPolicy.visible_filter``): a subscriber is never told of
  an item they may not see.
* One alert per (subscription, item, channel), however often an item is re-written.
* Webhooks: a JSON body signed with HMAC-SHA256 over ``"<timestamp>.<body>"`` with the
  subscription's secret (``X-Eoshare-Signature: sha256=<hex>``, ``X-Eoshare-Timestamp``),
  retried with exponential backoff, then written to the dead letters. Targets on loopback,
  private, link-local or reserved addresses are refused (checked at subscription and
  again at each delivery, against DNS rebinding) unless the operator allows them.
* An approved activation arms a subscription for its requester over its area and window.
* Several processes of one node (``serve --workers N``): every process streams to its own
  ``/alerts/stream`` listeners, but the item hooks (an activation's first data, its
  value-added products) and the webhooks run in the one process that holds the node's
  ``disaster-alerts`` lease (``eoshare.leases``). A process that takes the lease over
  from a holder that died starts again from the events written since that holder last
  renewed it: nothing is skipped (webhooks are claimed once per item, so a replay sends
  none twice).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import queue
import secrets
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import cql2
import httpx
import orjson

from eoshare.access.base import Principal
from eoshare.access.policy import AgreementPolicy, principal_for
from eoshare.access.store import AccessStore
from eoshare.catalog.base import Catalog, SearchQuery
from eoshare.catalog.bounds import check_filter_text, check_json
from eoshare.disaster.areas import parse_area
from eoshare.disaster.events import ItemEventLog
from eoshare.disaster.store import ActivationRow, DisasterStore, SubscriptionRow, iso
from eoshare.errors import (
    AccessDeniedError,
    InvalidRequestError,
    NotAuthenticatedError,
    NotFoundError,
)
from eoshare.leases import Leases, new_holder

JSON = dict[str, Any]
log = logging.getLogger("eoshare.alerts")
Clock = Callable[[], datetime]
BATCH = 500
LEASE = "disaster-alerts"
LEASE_TTL_S = 10.0


@dataclass(frozen=True)
class AlertSettings:
    allow_private_webhooks: bool = False
    webhook_attempts: int = 5
    webhook_backoff_s: float = 1.0
    webhook_timeout_s: float = 5.0
    poll_s: float = 0.2


def check_webhook(url: str, *, allow_private: bool) -> None:
    """Refuse non-HTTP(S) URLs and, unless allowed, hosts that resolve to loopback,
    private, link-local, multicast or reserved addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequestError("a webhook is an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise InvalidRequestError("a webhook URL must not carry credentials")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidRequestError(f"the webhook host {parts.hostname!r} does not resolve") from exc
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if (
            ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
            or ip.is_reserved or ip.is_unspecified
        ):  # fmt: skip
            raise InvalidRequestError(
                f"the webhook host {parts.hostname!r} resolves to a non-public address "
                f"({ip}); the operator has not allowed such targets"
            )


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class _Listener:
    def __init__(self, loop: asyncio.AbstractEventLoop, principal: Principal) -> None:
        self.loop = loop
        self.principal = principal
        self.queue: asyncio.Queue[JSON] = asyncio.Queue(maxsize=1000)

    def put(self, event: JSON) -> None:
        def push() -> None:
            if not self.queue.full():
                self.queue.put_nowait(event)

        self.loop.call_soon_threadsafe(push)


class AlertService:
    """Subscriptions, the worker that matches new items, and the delivery channels."""

    def __init__(
        self,
        store: DisasterStore,
        catalog: Catalog,
        policy: AgreementPolicy,
        access_store: AccessStore,
        events: ItemEventLog,
        settings: AlertSettings,
        *,
        clock: Clock | None = None,
        leases: Leases | None = None,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.policy = policy
        self.access_store = access_store
        self.events = events
        self.settings = settings
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self._listeners: dict[str, list[_Listener]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="eoshare-webhook")
        self._cursor = 0  # the last event streamed to this process's listeners
        # the lease of the hooks and webhooks (None: this process alone does them)
        self.leases = leases
        self.holder = new_holder()
        self._lead_cursor: int | None = None  # the last event hooked, while leading
        self._lease_until = 0.0  # (monotonic) when to renew or ask for the lease again
        # called with the items of each batch (activations: first data, post-event hooks)
        self.on_items: list[Callable[[list[JSON]], None]] = []
        self.delivered: queue.Queue[JSON] = queue.Queue()  # outcomes, for tests/benchmarks

    # --- subscriptions ----------------------------------------------------------------
    def subscribe(self, principal: Principal, doc: JSON) -> tuple[SubscriptionRow, str]:
        """A new subscription; returns it and its webhook secret (shown once)."""
        if principal.user is None:
            raise NotAuthenticatedError("sign in first: alerts belong to a user")
        if not isinstance(doc, dict):
            raise InvalidRequestError("a subscription is a JSON object")
        unknown = sorted(set(doc) - {"area", "bbox", "filter", "collections", "webhook"})
        if unknown:
            raise InvalidRequestError(f"unknown field(s): {', '.join(unknown)}")
        area = None
        if doc.get("area") is not None:
            area = parse_area(doc["area"])
        elif doc.get("bbox") is not None:
            from eoshare.disaster.areas import bbox_area

            bbox = doc["bbox"]
            if not isinstance(bbox, list) or not all(isinstance(v, int | float) for v in bbox):
                raise InvalidRequestError("bbox is four numbers")
            area = bbox_area([float(v) for v in bbox])
        flt = _parse_filter(doc.get("filter"))
        cols = doc.get("collections") or []
        if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
            raise InvalidRequestError("collections is a list of collection ids")
        webhook = doc.get("webhook")
        if webhook is not None:
            if not isinstance(webhook, str):
                raise InvalidRequestError("webhook is a URL")
            check_webhook(webhook, allow_private=self.settings.allow_private_webhooks)
        return self._insert(principal.user, area, flt, cols, webhook, None, None, None)

    def _insert(
        self,
        owner: str,
        area: JSON | None,
        flt: JSON | None,
        cols: list[str],
        webhook: str | None,
        activation: str | None,
        start: datetime | None,
        end: datetime | None,
    ) -> tuple[SubscriptionRow, str]:
        secret = secrets.token_urlsafe(32)
        row = SubscriptionRow(
            id=f"sub-{secrets.token_hex(6)}", owner=owner, created=self.clock(), area=area,
            filter=flt, collections=cols, webhook=webhook, secret=secret,
            activation=activation, window_start=start, window_end=end, active=True,
        )  # fmt: skip
        self.store.insert_subscription(row)
        return row, secret

    def arm_for_activation(self, a: ActivationRow, window: tuple[datetime, datetime]) -> None:
        """The subscription an approved activation gets: its requester, its area and
        window, its webhook if the request named one."""
        webhook = a.webhook
        if webhook is not None:
            try:
                check_webhook(webhook, allow_private=self.settings.allow_private_webhooks)
            except InvalidRequestError as exc:
                log.warning("activation webhook refused", extra={"activation": a.id,
                                                                 "reason": exc.detail})  # fmt: skip
                webhook = None
        self._insert(a.requested_by, a.area, None, [], webhook, a.id, *window)

    def disarm_activation(self, aid: str) -> None:
        self.store.deactivate_subscriptions(activation=aid)

    def visible_to(self, principal: Principal) -> list[SubscriptionRow]:
        if principal.user is None:
            raise NotAuthenticatedError("sign in first: alerts belong to a user")
        owner = None if "operator" in principal.roles else principal.user
        return self.store.list_subscriptions(owner=owner)

    def get(self, principal: Principal, sid: str) -> SubscriptionRow:
        row = self.store.get_subscription(sid)
        if row.owner != principal.user and "operator" not in principal.roles:
            raise NotFoundError(f"subscription {sid!r} does not exist")
        return row

    def rotate_secret(self, principal: Principal, sid: str) -> str:
        """A new webhook secret for the owner's subscription (shown once): how the owner
        of an activation's automatic subscription learns the secret that signs it."""
        row = self.get(principal, sid)
        if row.owner != principal.user:
            raise AccessDeniedError("only the subscription's owner may see its secret")
        secret = secrets.token_urlsafe(32)
        self.store.set_secret(sid, secret)
        return secret

    def cancel(self, principal: Principal, sid: str) -> None:
        self.get(principal, sid)
        self.store.deactivate_subscriptions(sid=sid)

    @staticmethod
    def to_doc(row: SubscriptionRow) -> JSON:
        return {
            "id": row.id,
            "owner": row.owner,
            "created": iso(row.created),
            "area": row.area,
            "filter": row.filter,
            "collections": row.collections,
            "webhook": row.webhook,
            "activation": row.activation,
            "window": (
                {"start": iso(row.window_start), "end": iso(row.window_end)}
                if row.window_start and row.window_end
                else None
            ),
            "active": row.active,
        }

    # --- the worker -------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._cursor = self.store.last_item_event()
        self._thread = threading.Thread(target=self._run, name="eoshare-alerts", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self.events.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.leases is not None and self._lead_cursor is not None:
            try:  # another process need not wait for it to expire
                self.leases.release(LEASE, self.holder)
            except Exception:
                log.warning("could not release the alerts lease", exc_info=True)

    def _leading(self) -> bool:
        """Whether this process runs the hooks and webhooks now: always without a lease
        table; else while it holds the lease (renewed at half its time, asked for again
        every third of it by the others)."""
        if self.leases is None:
            if self._lead_cursor is None:
                self._lead_cursor = self._cursor
            return True
        now = time.monotonic()
        if now < self._lease_until:
            return self._lead_cursor is not None
        previous = self.leases.get(LEASE)
        if self.leases.acquire(LEASE, self.holder, ttl_s=LEASE_TTL_S):
            self._lease_until = now + LEASE_TTL_S / 2
            if self._lead_cursor is None:
                self._lead_cursor = self._cursor
                if previous is not None and previous.holder != self.holder:
                    # taken over: what the last holder may not have seen, again
                    renewed = previous.expires_at - LEASE_TTL_S
                    since = datetime.fromtimestamp(renewed - 1, UTC)
                    self._lead_cursor = min(self._cursor, self.store.item_event_before(since))
            return True
        self._lease_until = now + LEASE_TTL_S / 3
        self._lead_cursor = None
        return False

    def _run(self) -> None:
        while not self._stop.is_set():
            self.events.wake.wait(self.settings.poll_s)
            self.events.wake.clear()
            try:
                self.process_pending()
            except Exception:
                log.exception("alert worker failed; continuing")
                time.sleep(1)

    def process_pending(self) -> int:
        """Handle every item event after the cursors; returns how many."""
        done = 0
        lead = False
        while True:
            # asked again for each batch: a long backlog must not outlive the lease
            lead = self._leading()
            start = self._cursor
            if lead and self._lead_cursor is not None:
                start = min(start, self._lead_cursor)
            batch = self.store.item_events_after(start, BATCH)
            if not batch:
                break
            streamed = [(c, i) for n, c, i in batch if n > self._cursor]
            hooked: list[tuple[str, str]] = []
            if lead and self._lead_cursor is not None:
                hooked = [(c, i) for n, c, i in batch if n > self._lead_cursor]
                self._lead_cursor = batch[-1][0]
            self._cursor = max(self._cursor, batch[-1][0])
            self._handle(streamed, hooked)
            done += len(batch)
        if done and lead and self._lead_cursor is not None:
            # the holder prunes, behind what it has hooked: a process that only streams
            # must not drop events the holder has yet to see
            self.store.prune_item_events(min(self._cursor, self._lead_cursor) - 10_000)
        return done

    def _handle(self, streamed: list[tuple[str, str]], hooked: list[tuple[str, str]]) -> None:
        """``streamed``: items new to this process's stream listeners; ``hooked``: items
        for the hooks and webhooks (this process leads)."""
        with self._lock:
            listening_here = any(self._listeners.values())
        if not hooked and not listening_here:
            return  # nothing to hook, nobody streaming from this process: no reads
        docs: dict[tuple[str, str], JSON] = {}
        for cid, iid in dict.fromkeys([*streamed, *hooked]):
            try:
                docs[(cid, iid)] = self.catalog.get_item(cid, iid)
            except NotFoundError:
                continue  # deleted since
        if not docs:
            return
        hook_items = [docs[r] for r in dict.fromkeys(hooked) if r in docs]
        if hook_items:
            for hook in self.on_items:
                try:
                    hook(hook_items)
                except Exception:
                    log.exception("an item hook failed")
        subs = self.store.list_subscriptions(active_only=True)
        if not subs:
            return
        stream_set, hook_set = set(streamed), set(hooked)
        by_collection: dict[str, list[str]] = {}
        for cid, iid in docs:
            by_collection.setdefault(cid, []).append(iid)
        principals: dict[str, Principal | None] = {}
        for sub in subs:
            webhook = bool(sub.webhook) and bool(hook_set)
            listening = bool(stream_set) and bool(self._listeners_for(sub.owner))
            if not webhook and not listening:
                continue  # nothing for this process to deliver: no search
            if sub.owner not in principals:
                principals[sub.owner] = self._principal(sub.owner)
            principal = principals[sub.owner]
            if principal is None:
                continue
            for item in self._matches(sub, principal, by_collection):
                ref = (str(item.get("collection")), str(item.get("id")))
                self._deliver(
                    sub, principal, item,
                    stream=listening and ref in stream_set, webhook=webhook and ref in hook_set,
                )  # fmt: skip

    def _principal(self, username: str) -> Principal | None:
        try:
            user = self.access_store.get_user(username)
        except NotFoundError:
            return None
        if user.disabled:
            return None
        member = None
        if user.member is not None:
            try:
                member = self.access_store.get_member(user.member)
            except NotFoundError:
                member = None
        return principal_for(user, member)

    def _matches(
        self, sub: SubscriptionRow, principal: Principal, by_collection: dict[str, list[str]]
    ) -> list[JSON]:
        # what the subscriber may see at this very moment: the same filter search uses
        visible = self.policy.visible_filter(principal)
        out: list[JSON] = []
        for cid, ids in by_collection.items():
            if sub.collections and cid not in sub.collections:
                continue
            query = SearchQuery(
                collections=(cid,), ids=tuple(ids), intersects=sub.area, filter=sub.filter,
                datetime_start=sub.window_start, datetime_end=sub.window_end,
                limit=len(ids), visible=visible, count=False,
            )  # fmt: skip
            out.extend(self.catalog.search(query).items)
        return out

    # --- delivery ---------------------------------------------------------------------
    def _event(self, sub: SubscriptionRow, item: JSON) -> JSON:
        cid, iid = item.get("collection"), item.get("id")
        return {
            "type": "item.created",
            "id": f"{sub.id}:{cid}:{iid}",
            "at": iso(self.clock()),
            "subscription": sub.id,
            "activation": sub.activation,
            "collection": cid,
            "item_id": iid,
            "href": f"/collections/{cid}/items/{iid}",
            "item": item,
        }

    def _deliver(
        self,
        sub: SubscriptionRow,
        principal: Principal,
        item: JSON,
        *,
        stream: bool = True,
        webhook: bool = True,
    ) -> None:
        cid, iid = str(item.get("collection")), str(item.get("id"))
        event = self._event(sub, item)
        listeners = self._listeners_for(sub.owner) if stream else []
        if listeners and self.store.claim_delivery(sub.id, cid, iid, "sse", self.clock()):
            for listener in listeners:
                listener.put(event)
            self.store.finish_delivery(sub.id, cid, iid, "sse", status="sent", attempts=1)
        if (
            webhook
            and sub.webhook
            and self.store.claim_delivery(sub.id, cid, iid, "webhook", self.clock())
        ):
            self._pool.submit(self._post, sub, cid, iid, event)

    def _post(self, sub: SubscriptionRow, cid: str, iid: str, event: JSON) -> None:
        assert sub.webhook is not None
        body = orjson.dumps(event)
        error = ""
        attempts = 0
        delay = self.settings.webhook_backoff_s
        for attempts in range(1, self.settings.webhook_attempts + 1):
            timestamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "eoshare-alerts",
                "X-Eoshare-Event": "item.created",
                "X-Eoshare-Delivery": event["id"],
                "X-Eoshare-Timestamp": timestamp,
                "X-Eoshare-Signature": sign(sub.secret, timestamp, body),
            }
            try:
                check_webhook(sub.webhook, allow_private=self.settings.allow_private_webhooks)
                r = httpx.post(
                    sub.webhook, content=body, headers=headers,
                    timeout=self.settings.webhook_timeout_s, follow_redirects=False,
                )  # fmt: skip
                if 200 <= r.status_code < 300:
                    self.store.finish_delivery(
                        sub.id, cid, iid, "webhook", status="sent", attempts=attempts
                    )
                    self.delivered.put({"subscription": sub.id, "item": iid, "ok": True})
                    return
                error = f"HTTP {r.status_code}"
            except (httpx.HTTPError, InvalidRequestError) as exc:
                error = str(exc) or type(exc).__name__
            if self._stop.is_set():
                break
            if attempts < self.settings.webhook_attempts:
                self._stop.wait(delay)
                delay *= 2
        self.store.finish_delivery(sub.id, cid, iid, "webhook", status="dead", attempts=attempts)
        self.store.dead_letter(
            sub.id, at=self.clock(), url=sub.webhook, body=body.decode(), attempts=attempts,
            error=error,
        )  # fmt: skip
        self.delivered.put({"subscription": sub.id, "item": iid, "ok": False, "error": error})
        log.warning("webhook dead-lettered", extra={"subscription": sub.id, "error": error})

    # --- server-sent events -----------------------------------------------------------
    def _listeners_for(self, owner: str) -> list[_Listener]:
        with self._lock:
            return list(self._listeners.get(owner, []))

    def listen(self, principal: Principal) -> _Listener:
        if principal.user is None:
            raise NotAuthenticatedError("sign in first: alerts belong to a user")
        listener = _Listener(asyncio.get_running_loop(), principal)
        with self._lock:
            self._listeners.setdefault(principal.user, []).append(listener)
        return listener

    def unlisten(self, listener: _Listener) -> None:
        user = listener.principal.user or ""
        with self._lock:
            group = self._listeners.get(user, [])
            if listener in group:
                group.remove(listener)

    def dead_letters(self, principal: Principal) -> list[JSON]:
        if principal.user is None:
            raise NotAuthenticatedError("sign in first")
        owner = None if "operator" in principal.roles else principal.user
        return self.store.dead_letters(owner=owner)


def _parse_filter(value: Any) -> JSON | None:
    if value is None or value == "":
        return None
    # bounded before the CQL2 parser sees it: deep nesting overflows its native stack
    if isinstance(value, str):
        check_filter_text(value)
    else:
        check_json(value)
    try:
        expr = cql2.Expr(value)
        expr.validate()
        out: JSON = expr.to_json()
    except (ValueError, TypeError, Exception) as exc:  # cql2 raises its own error types
        raise InvalidRequestError(f"the filter is not valid CQL2: {exc}") from exc
    return out
