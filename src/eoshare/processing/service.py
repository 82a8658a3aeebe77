"""``ProcessingService``: what the openEO routes call. Built once in ``create_app``.

Synchronous ``/result`` runs in the node (Dask's threaded scheduler, or the cluster named
by ``EOSHARE_DASK``); a batch job runs in its own process (``worker.py``) so that cancel
frees it at once and a crash of one job never takes the node down. Either way the
inputs are resolved here first, through ``inputs.resolve_collection`` (the access
decisions), and the results of a job are committed to the store and the catalogue only
once they are complete (``publish.py``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import shutil
import tempfile
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from eoshare.access.agreements import Agreement
from eoshare.access.base import AccessPolicy, Principal
from eoshare.access.egress import AssetGate
from eoshare.catalog.base import Catalog
from eoshare.errors import ConflictError, EoshareError, NotFoundError
from eoshare.ingest.checksums import multihash_sha256, sha256_file
from eoshare.leases import Leases, lease_location, new_holder
from eoshare.processing import graph as graphs
from eoshare.processing import publish
from eoshare.processing.errors import (
    AuthenticationRequired,
    ExecutionFailed,
    JobLocked,
    JobNotFinished,
    OpenEOError,
    ProcessGraphInvalid,
    ProcessParameterInvalid,
)
from eoshare.processing.execute import Output, Run, parse_instant
from eoshare.processing.inputs import (
    Band,
    CollectionInput,
    collection_bands,
    resolve_collection,
    visible_collection,
)
from eoshare.processing.jobs import Job, JobStore
from eoshare.processing.registry import make_registry, own_processes, process_specs
from eoshare.storage.base import Store

JSON = dict[str, Any]
log = logging.getLogger("eoshare.processing")


@dataclass
class SyncResult:
    path: Path
    media_type: str
    workdir: Path

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


class ProcessingService:
    def __init__(
        self,
        catalog: Catalog,
        policy: AccessPolicy,
        store: Store,
        gate: AssetGate,
        *,
        db_path: str | Path,
        work_dir: Path,
        dask_address: str | None = None,
        workers: int = 2,
        per_member: int = 1,
        sync_max_pixels: int = 400_000_000,
        leases: Leases | None = None,
        runner_ttl_s: float = 30.0,
    ) -> None:
        # Several processes serve one node and share the jobs table: a job is claimed
        # by the process that runs it (lease ``job:<id>``), and each process keeps a
        # ``runner:<holder>`` lease alive while it lives, so that a process starting up
        # fails only the jobs whose runner is gone, never those another process runs.
        self.leases = leases
        self.holder = new_holder()
        self.runner_ttl_s = runner_ttl_s
        self._beat = threading.Event()
        self._beating = False
        self.catalog = catalog
        self.policy = policy
        self.store = store
        self.gate = gate
        self.jobs = JobStore(db_path)
        self.work_dir = work_dir
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.dask_address = dask_address or None
        self.sync_max_pixels = sync_max_pixels
        self.per_member = max(1, per_member)
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="job")
        self._member_slots: dict[str, threading.BoundedSemaphore] = {}
        self._procs: dict[str, BaseProcess] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._recover()

    def close(self) -> None:
        self._closed = True
        self._beat.set()
        with self._lock:
            procs = list(self._procs.items())
        for job_id, proc in procs:
            proc.kill()
            self.jobs.log(job_id, "error", "the node stopped while the job ran")
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.jobs.close()
        if self.leases is not None:
            with contextlib.suppress(Exception):
                self.leases.release(self._runner_lease, self.holder)
            self.leases.close()

    @property
    def _runner_lease(self) -> str:
        return f"runner:{self.holder}"

    def _running_elsewhere(self, job_id: str) -> bool:
        """Whether a live process (not this one) has claimed the job."""
        if self.leases is None:
            return False
        claim = self.leases.get(f"job:{job_id}")
        if claim is None or claim.holder == self.holder:
            return False
        runner = self.leases.get(f"runner:{claim.holder}")
        return runner is not None and runner.expires_at > time.time()

    def _recover(self) -> None:
        """A job left queued or running by a process that stopped is marked failed (a
        job another live process runs is left alone)."""
        for job_id in self.jobs.interrupted():
            if self._running_elsewhere(job_id):
                continue
            self.jobs.update_job(
                job_id, status="error", error="the node stopped while the job was running"
            )
            self.jobs.log(job_id, "error", "the node stopped while the job ran; start it again")

    def _claim(self, job_id: str) -> None:
        if self.leases is None:
            return
        with self._lock:
            if not self._beating:
                # this process runs jobs from now on: it says so while it lives; the
                # thread holds the service weakly, so a dropped app does not live on
                self.leases.acquire(self._runner_lease, self.holder, self.runner_ttl_s)
                threading.Thread(
                    target=_heartbeat,
                    args=(weakref.ref(self), self._beat, self.leases, self.runner_ttl_s),
                    name="job-runner",
                    daemon=True,
                ).start()
                self._beating = True
        # held until the job ends; a dead holder is told by its runner lease
        self.leases.acquire(f"job:{job_id}", self.holder, ttl_s=10 * 365 * 86400.0)

    def _unclaim(self, job_id: str) -> None:
        if self.leases is not None:
            with contextlib.suppress(Exception):
                self.leases.release(f"job:{job_id}", self.holder)

    # --- metadata ---------------------------------------------------------------------
    def process_list(self) -> list[JSON]:
        return list(process_specs().values())

    def known_processes(self) -> set[str]:
        return set(process_specs())

    def openeo_collection(self, principal: Principal, cid: str, *, full: bool) -> JSON:
        """A STAC collection as openEO metadata (``cube:dimensions``, bands)."""
        coll = visible_collection(self.catalog, self.policy, principal, cid)
        extent = self.catalog.collection_extent(cid) or coll.get("extent")
        out: JSON = {
            "stac_version": coll.get("stac_version", "1.1.0"),
            "type": "Collection",
            "id": cid,
            "title": coll.get("title", cid),
            "description": coll.get("description", cid),
            "license": coll.get("license", "other"),
            "extent": extent,
            "links": [],
        }
        if coll.get("keywords"):
            out["keywords"] = coll["keywords"]
        if coll.get("providers"):
            out["providers"] = coll["providers"]
        if not full:
            return out
        bands = collection_bands(self.catalog, self.policy, principal, cid)
        bbox = (extent or {}).get("spatial", {}).get("bbox", [[-180, -90, 180, 90]])[0]
        interval = (extent or {}).get("temporal", {}).get("interval", [[None, None]])[0]
        res = min((b.resolution_m for b in bands if b.resolution_m), default=None)
        out["cube:dimensions"] = {
            "x": {"type": "spatial", "axis": "x", "extent": [bbox[0], bbox[2]],
                  "reference_system": 4326, **({"step": res} if res else {})},
            "y": {"type": "spatial", "axis": "y", "extent": [bbox[1], bbox[3]],
                  "reference_system": 4326, **({"step": res} if res else {})},
            "t": {"type": "temporal", "extent": list(interval), "step": None},
            "bands": {"type": "bands", "values": [b.name for b in bands]},
        }  # fmt: skip
        out["summaries"] = {
            "eo:bands": [_eo_band(b) for b in bands],
            "bands": [_eo_band(b) for b in bands],
        }
        out["stac_extensions"] = [
            "https://stac-extensions.github.io/datacube/v2.2.0/schema.json",
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
        ]
        return out

    def openeo_collections(self, principal: Principal) -> list[JSON]:
        out = []
        for coll in self.catalog.list_collections():
            try:
                out.append(self.openeo_collection(principal, str(coll["id"]), full=False))
            except NotFoundError:
                continue
        return out

    # --- validation -------------------------------------------------------------------
    def check(self, principal: Principal, graph: JSON) -> list[graphs.LoadCall]:
        """Raise an openEO error unless ``graph`` can run for ``principal``."""
        graphs.validate(graph, self.known_processes())
        calls = graphs.load_calls(graph)
        for call in calls:
            visible_collection(self.catalog, self.policy, principal, call.collection)
        return calls

    def validation_errors(self, principal: Principal, graph: Any) -> list[JSON]:
        try:
            if not isinstance(graph, dict):
                raise ProcessGraphInvalid("The process graph must be an object of nodes.")
            self.check(principal, graph)
        except OpenEOError as exc:
            return [{"code": exc.code, "message": exc.detail}]
        return []

    def _resolver(self, principal: Principal) -> Any:
        def resolve(
            cid: str,
            bbox: tuple[float, float, float, float] | None,
            start: datetime | None,
            end: datetime | None,
            bands: list[str] | None,
        ) -> CollectionInput:
            return resolve_collection(
                self.catalog, self.gate, self.store, principal, cid,
                bbox=bbox, start=start, end=end, bands=bands,
            )  # fmt: skip

        return resolve

    # --- synchronous ------------------------------------------------------------------
    def run_sync(self, principal: Principal, graph: JSON) -> SyncResult:
        self.check(principal, graph)
        workdir = Path(tempfile.mkdtemp(prefix="sync-", dir=self.work_dir))
        try:
            run = Run(
                self._resolver(principal),
                workdir,
                max_pixels=self.sync_max_pixels,
                dask_address=self.dask_address,
            )
            _, outputs = _guarded(lambda: run.execute(graph, make_registry(own_processes(run))))
            if len(outputs) != 1:
                raise ProcessGraphInvalid(
                    f"The process graph produced {len(outputs)} files; a synchronous call "
                    "returns one. Use a batch job."
                )
            return SyncResult(outputs[0].path, outputs[0].media_type, workdir)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise

    # --- batch jobs -------------------------------------------------------------------
    @staticmethod
    def _owner(principal: Principal) -> str:
        if principal.user is None:
            raise AuthenticationRequired("Batch jobs need an authenticated user.")
        return principal.user

    def create_job(self, principal: Principal, body: JSON) -> Job:
        owner = self._owner(principal)
        graph = graphs.graph_of(body)
        self.check(principal, graph)
        process = body.get("process", {"process_graph": graph})
        return self.jobs.create_job(
            owner,
            principal.member,
            process,
            title=_text(body.get("title")),
            description=_text(body.get("description")),
        )

    def list_jobs(self, principal: Principal, *, limit: int = 100) -> list[Job]:
        return self.jobs.list_jobs(self._owner(principal), limit=limit)

    def get_job(self, principal: Principal, job_id: str) -> Job:
        return self.jobs.get_job(job_id, self._owner(principal))

    def update_job(self, principal: Principal, job_id: str, body: JSON) -> None:
        job = self.get_job(principal, job_id)
        if job.status in ("queued", "running"):
            raise JobLocked("Batch job is locked due to a queued or running batch computation.")
        fields: JSON = {}
        if "process" in body:
            graph = graphs.graph_of(body)
            self.check(principal, graph)
            fields["process"] = body["process"]
        for key in ("title", "description"):
            if key in body:
                fields[key] = _text(body[key])
        if fields:
            self.jobs.update_job(job_id, **fields)

    def delete_job(self, principal: Principal, job_id: str) -> None:
        self.get_job(principal, job_id)
        self._kill(job_id)
        self.jobs.delete_job(job_id)

    def start_job(self, principal: Principal, job_id: str) -> None:
        job = self.get_job(principal, job_id)
        if job.status in ("queued", "running"):
            return  # starting a started job changes nothing (the spec allows 202 again)
        if not self.jobs.set_status(job_id, "queued", only_from=(job.status,)):
            raise ConflictError("the job changed while it was being started; try again")
        self.jobs.update_job(job_id, progress=0.0, error=None)
        self.jobs.log(job_id, "info", "queued")
        self._claim(job_id)
        self._pool.submit(self._run_job, principal, job_id)

    def cancel_job(self, principal: Principal, job_id: str) -> None:
        job = self.get_job(principal, job_id)
        if job.status not in ("queued", "running"):
            return
        self.jobs.set_status(job_id, "canceled", only_from=("queued", "running"))
        self._kill(job_id)
        self.jobs.log(job_id, "warning", "canceled")

    def _kill(self, job_id: str) -> None:
        with self._lock:
            proc = self._procs.get(job_id)
        if proc is not None and proc.is_alive():
            proc.kill()

    def job_logs(self, principal: Principal, job_id: str, *, after: int = 0) -> list[JSON]:
        self.get_job(principal, job_id)
        return self.jobs.logs(job_id, after=after)

    def job_results(self, principal: Principal, job_id: str) -> JSON:
        """The published result item of a finished job (as stored)."""
        job = self.get_job(principal, job_id)
        if job.status != "finished" or not job.result:
            if job.status == "error":
                raise JobNotFinished(
                    f"Batch job has not finished computing the results: it failed "
                    f"({job.error or 'see its logs'})."
                )
            raise JobNotFinished(
                "Batch job has not finished computing the results yet. Please try again later."
            )
        return self.catalog.get_item(job.result["collection"], job.result["item"])

    def estimate(self, principal: Principal, job_id: str) -> JSON:
        job = self.get_job(principal, job_id)
        graph = job.process.get("process_graph") or {}
        size = 0
        for call in graphs.load_calls(graph):
            inp = self._resolve_call(principal, call)
            for item in inp.items:
                for asset in item["assets"].values():
                    size += int(asset.get("file:size") or 0)
        return {"costs": 0, "size": size, "duration": "PT1M", "downloads_included": None}

    def _resolve_call(self, principal: Principal, call: graphs.LoadCall) -> CollectionInput:
        start = parse_instant(call.start) if call.start else None
        end = parse_instant(call.end, end=True) if call.end else None
        return resolve_collection(
            self.catalog, self.gate, self.store, principal, call.collection,
            bbox=call.bbox, start=start, end=end, bands=call.bands,
        )  # fmt: skip

    def _slot(self, member: str | None) -> threading.BoundedSemaphore:
        key = member or ""
        with self._lock:
            slot = self._member_slots.get(key)
            if slot is None:
                slot = self._member_slots[key] = threading.BoundedSemaphore(self.per_member)
            return slot

    def _run_job(self, principal: Principal, job_id: str) -> None:
        slot = self._slot(principal.member)
        while not slot.acquire(timeout=0.5):
            if self._closed or self.jobs.get_job(job_id).status != "queued":
                return
        try:
            self._run_job_slot(principal, job_id)
        except Exception as exc:  # a failure here must never leave the job "running"
            log.exception("job failed", extra={"job": job_id})
            self.jobs.update_job(job_id, status="error", error=str(exc)[:2000])
            self.jobs.log(job_id, "error", f"{type(exc).__name__}: {exc}"[:2000])
        finally:
            slot.release()
            self._unclaim(job_id)

    def _run_job_slot(self, principal: Principal, job_id: str) -> None:
        job = self.jobs.get_job(job_id)
        if job.status != "queued" or self._closed:
            return
        workdir = Path(tempfile.mkdtemp(prefix=f"{job_id}-", dir=self.work_dir))
        try:
            graph = job.process.get("process_graph") or {}
            try:
                self.check(principal, graph)
                inputs: dict[str, CollectionInput] = {}
                for call in graphs.load_calls(graph):
                    resolved = self._resolve_call(principal, call)
                    prev = inputs.get(call.collection)
                    inputs[call.collection] = _merge(prev, resolved) if prev else resolved
            except EoshareError as exc:
                self._fail(job_id, exc.detail)
                return
            plan = {
                "graph": graph,
                "inputs": {k: v.to_dict() for k, v in inputs.items()},
                "out_dir": str(workdir),
                "dask": self.dask_address,
            }
            plan_path = workdir / "plan.json"
            plan_path.write_text(json.dumps(plan), encoding="utf-8")
            if not self.jobs.set_status(job_id, "running", only_from=("queued",)):
                return
            self.jobs.log(job_id, "info", "running")
            code = self._spawn(job_id, plan_path, workdir)
            if self.jobs.get_job(job_id).status == "canceled":
                return
            if code != 0:
                err = _read_json(workdir / "error.json") or {}
                self._fail(job_id, str(err.get("message") or f"the job process exited ({code})"))
                return
            outputs = [Output.from_dict(d) for d in _read_json(workdir / "outputs.json") or []]
            where = self._publish(principal, job, inputs, outputs)
            self.jobs.update_job(job_id, status="finished", progress=100.0, result=where)
            self.jobs.log(
                job_id, "info", f"finished: results in {where['collection']}/{where['item']}"
            )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _fail(self, job_id: str, message: str) -> None:
        self.jobs.update_job(job_id, status="error", error=message[:2000])
        self.jobs.log(job_id, "error", message)

    def _spawn(self, job_id: str, plan_path: Path, workdir: Path) -> int:
        """Run the job in its own process, forked from a server that has the processing
        libraries imported already (a fresh interpreter spends most of a small job
        importing them). Kill it when the job is cancelled, from here or elsewhere."""
        from eoshare.processing.worker import run_in_child

        proc = _job_context().Process(
            target=run_in_child, args=(str(plan_path), str(workdir / "worker.out")), daemon=True
        )
        proc.start()
        with self._lock:
            self._procs[job_id] = proc
        seen = 0
        try:
            while True:
                proc.join(timeout=0.5)
                if proc.exitcode is not None:
                    break
                seen = self._copy_log(job_id, workdir, seen)
                # cancelled elsewhere (``eoshare jobs cancel``, another worker)
                if self.jobs.get_job(job_id).status == "canceled":
                    proc.kill()
            seen = self._copy_log(job_id, workdir, seen)
        finally:
            with self._lock:
                self._procs.pop(job_id, None)
        return int(proc.exitcode or 0)

    def _copy_log(self, job_id: str, workdir: Path, seen: int) -> int:
        path = workdir / "log.jsonl"
        if not path.exists():
            return seen
        lines = path.read_text(encoding="utf-8").splitlines()
        for line in lines[seen:]:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if "progress" in rec:
                self.jobs.update_job(job_id, progress=float(rec["progress"]))
            else:
                self.jobs.log(job_id, str(rec.get("level", "info")), str(rec.get("message", "")))
        return len(lines)

    # --- publishing -------------------------------------------------------------------
    def _agreement(self, collection: str) -> Agreement | None:
        finder = getattr(self.policy, "agreement", None)
        found: Agreement | None = finder(collection) if finder is not None else None
        return found

    def _publish(
        self,
        principal: Principal,
        job: Job,
        inputs: dict[str, CollectionInput],
        outputs: list[Output],
    ) -> JSON:
        """Store the files and catalogue the item; on failure remove what was stored."""
        owner = principal.member or principal.user or "node"
        input_agreements = [self._agreement(cid) for cid in inputs]
        cid = publish.results_collection_id(owner, None)
        agreement = publish.strictest(input_agreements, collection=cid, owner=owner)
        if agreement is not None:
            cid = publish.results_collection_id(owner, agreement)
            agreement = publish.strictest(input_agreements, collection=cid, owner=owner)
        self._ensure_collection(cid, owner, agreement, principal)
        keys: list[str] = []
        sizes: list[JSON] = []
        try:
            for out in outputs:
                key = f"{cid}/{job.id}/{out.path.name}"
                stored = self.store.put_file(key, out.path)
                keys.append(key)
                digest = stored.sha256.split(":", 1)[1] if stored.sha256 else sha256_file(out.path)
                sizes.append({"file:size": stored.size, "file:checksum": multihash_sha256(digest)})
            input_items = [
                {
                    "collection": inp.collection,
                    "id": item["id"],
                    "datetime": (item.get("properties") or {}).get("datetime"),
                }
                for inp in inputs.values()
                for item in inp.items
            ]
            item = publish.result_item(
                job_id=job.id,
                collection=cid,
                process=job.process,
                outputs=outputs,
                keys=keys,
                sizes=sizes,
                inputs=input_items,
                title=job.title,
                owner_user=principal.user,
            )
            with contextlib.suppress(NotFoundError):  # a job run again replaces its result
                self.catalog.delete_item(cid, job.id)
            self.catalog.create_item(cid, item)
        except BaseException:
            for key in keys:
                try:
                    self.store.delete(key)
                except EoshareError:
                    log.warning("could not remove a stored result", extra={"key": key})
            raise
        return {"collection": cid, "item": job.id}

    def _ensure_collection(
        self, cid: str, owner: str, agreement: Agreement | None, principal: Principal
    ) -> None:
        try:
            self.catalog.get_collection(cid)
        except NotFoundError:
            with contextlib.suppress(ConflictError):
                self.catalog.create_collection(publish.results_collection(cid, owner, agreement))
        if agreement is not None:
            store = getattr(self.policy, "store", None)
            if store is not None and store.find_agreement(cid) != agreement:
                store.put_agreement(agreement, who=f"processing:{principal.user}")
                invalidate = getattr(self.policy, "invalidate", None)
                if invalidate is not None:
                    invalidate()


_PRELOAD = [
    "eoshare.processing.worker",
    "eoshare.processing.execute",
    "eoshare.processing.registry",
    "openeo_processes_dask.process_implementations",
    "openeo_pg_parser_networkx",
    "odc.stac",
    "rioxarray",
]


def _job_context() -> Any:
    """The multiprocessing context of job processes: a fork server that imports the
    processing libraries once (started by the first job, lives as long as the node)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def _eo_band(b: Band) -> JSON:
    out: JSON = {"name": b.name}
    if b.common_name:
        out["common_name"] = b.common_name
    if b.resolution_m:
        out["gsd"] = b.resolution_m
    return out


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProcessParameterInvalid("title and description must be text")
    return value[:2000]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _merge(a: CollectionInput, b: CollectionInput) -> CollectionInput:
    ids = {i["id"] for i in a.items}
    bands = {x.name: x for x in a.bands}
    for x in b.bands:
        bands.setdefault(x.name, x)
    res = [r for r in (a.max_resolution_m, b.max_resolution_m) if r is not None]
    return CollectionInput(
        collection=a.collection,
        bands=list(bands.values()),
        items=a.items + [i for i in b.items if i["id"] not in ids],
        gdal_env={**a.gdal_env, **b.gdal_env},
        max_resolution_m=max(res) if res else None,
        agreements=sorted(set(a.agreements) | set(b.agreements)),
    )


def _guarded(fn: Any) -> Any:
    """Run a graph; errors of the processes become openEO errors (never a bare 500)."""
    start = time.monotonic()
    try:
        return fn()
    except OpenEOError:
        raise
    except EoshareError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
        raise ProcessGraphInvalid(f"The process graph failed: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        if _is_process_error(exc):
            # openeo-processes-dask's own errors (a missing parameter...): the graph's fault
            raise ProcessGraphInvalid(
                f"The process graph failed: {type(exc).__name__}: {exc}"
            ) from exc
        log.exception("graph failed", extra={"seconds": time.monotonic() - start})
        raise ExecutionFailed(f"Server error: {type(exc).__name__}: {exc}") from exc


def _is_process_error(exc: Exception) -> bool:
    """An error the process implementations raise about the graph they were given."""
    try:
        from openeo_processes_dask.process_implementations.exceptions import OpenEOException
    except ImportError:  # pragma: no cover - a dependency of processing
        return False
    return isinstance(exc, OpenEOException)


def _heartbeat(
    service: weakref.ref[ProcessingService], stop: threading.Event, leases: Leases, ttl_s: float
) -> None:
    """Renew a service's runner lease three times per its lifetime, while it lives."""
    while not stop.wait(ttl_s / 3):
        alive = service()
        if alive is None:
            return
        name, holder = alive._runner_lease, alive.holder
        del alive
        try:
            leases.acquire(name, holder, ttl_s)
        except Exception:
            log.exception("cannot renew the job runner's lease")


def open_processing(settings: Any, state: Any) -> ProcessingService:
    """The processing service of ``create_app`` (over its catalogue, policy and store)."""
    p = settings.processing
    data_dir = Path(settings.data_dir)
    return ProcessingService(
        state.catalog,
        state.access,
        state.store,
        state.gate,
        db_path=settings.state_db(Path(p.db) if p.db else data_dir / "processing.db"),
        work_dir=Path(p.work_dir) if p.work_dir else data_dir / "processing",
        dask_address=settings.dask or None,
        workers=p.workers,
        per_member=p.per_member,
        sync_max_pixels=p.sync_max_pixels,
        leases=Leases(lease_location(settings)),
    )
