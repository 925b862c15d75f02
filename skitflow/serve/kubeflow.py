"""Talking to Kubeflow for the service: the same submit code as `skitflow submit`, bounded in time.

Every call runs in a worker thread of a fixed pool and is waited for at most `kfp_timeout`
seconds; past that the request gets a 504 instead of hanging. A call that had not started yet is
cancelled, so nothing is submitted behind the client's back; one already talking to Kubeflow
finishes on its own (its retries stop at a deadline inside the timeout), and with an
`Idempotency-Key` a later request learns its outcome. Uploads are done once per content-named
version (a lock per version, then remembered), so concurrent first requests of one recipe never
race to create the same pipeline or version.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from skitflow.errors import RemoteError
from skitflow.serve import metrics
from skitflow.submit import reconcile
from skitflow.submit.client import Kfp, Target, credentials_from, kfp_policy
from skitflow.submit.config import normalise_host

T = TypeVar("T")


class UpstreamTimeout(Exception):
    """Kubeflow did not answer within the service's timeout; `started` says whether the call
    reached Kubeflow (and so may still take effect)."""

    def __init__(self, what: str, seconds: float, started: bool) -> None:
        super().__init__(what)
        self.what, self.seconds, self.started = what, seconds, started


class Gateway:
    """The service's one Kfp client, its worker pool, and what it already uploaded."""

    def __init__(self, host: str, namespace: str | None, timeout: float, workers: int = 16,
                 kfp: Kfp | None = None) -> None:
        policy = kfp_policy()
        # Retries must end inside the wait a request allows, each try a fraction of it.
        policy = dataclasses.replace(policy, deadline=min(policy.deadline, timeout / 2),
                                     timeout=min(policy.timeout, max(1.0, timeout / 3)),
                                     max_backoff=min(policy.max_backoff, 2.0))
        target = Target(normalise_host(host), namespace, credentials_from())
        self.kfp = kfp or Kfp(target, policy)
        self.timeout = timeout
        self.pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="skitflow-kfp")
        self._lock = threading.Lock()
        self._version_locks: dict[str, threading.Lock] = {}
        self._uploaded: dict[str, tuple[str, str]] = {}
        self._experiments: dict[str, str] = {}

    def link(self, run_id: str) -> str:
        return self.kfp.target.run_link(run_id)

    # -- blocking operations (worker threads) ------------------------------------------------

    def submit(self, submission: reconcile.Submission) -> reconcile.SubmitResult:
        """Upload the version if this service has not yet, then start the run (no schedules)."""
        with self._lock:
            version_lock = self._version_locks.setdefault(submission.version, threading.Lock())
        with version_lock:
            ids = self._uploaded.get(submission.version)
            if ids is None:
                uploaded = reconcile.submit(self.kfp, dataclasses.replace(
                    submission, start_run=False, schedule=None))
                ids = (uploaded.pipeline_id, uploaded.version_id)
                self._uploaded[submission.version] = ids
        result = reconcile.SubmitResult(pipeline_id=ids[0], version_id=ids[1])
        experiment = self._experiments.get(submission.experiment)
        if experiment is None:
            experiment = reconcile.ensure_experiment(self.kfp, submission.experiment,
                                                     submission.namespace)
            self._experiments[submission.experiment] = experiment
        result.experiment_id = experiment
        try:
            result.run_id, result.run_name = reconcile.start_run(self.kfp, submission, result)
        except RemoteError:  # the version or experiment may be gone: look again next time
            self._uploaded.pop(submission.version, None)
            self._experiments.pop(submission.experiment, None)
            raise
        return result

    def get_run(self, run_id: str) -> Any:
        return self.kfp.call("checking the run", lambda client: client.get_run(run_id))

    def run_metrics(self, run: Any, plan: Any) -> metrics.MetricsResult:
        """A finished run's metric values (never raises; see skitflow.serve.metrics)."""
        return metrics.read_metrics(run, plan, self.kfp.get_artifact,
                                    secrets=tuple(self.kfp.target.credentials.secrets()))

    # -- waiting for them (the event loop) ---------------------------------------------------

    def start(self, operation: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        return self.pool.submit(operation, *args)

    async def wait(self, job: concurrent.futures.Future[T], what: str,
                   timeout: float | None = None, cancel: bool = True) -> T:
        """The job's result, or UpstreamTimeout after `timeout` (cancelling it if not started,
        unless `cancel` is false: another request owns it)."""
        limit = self.timeout if timeout is None else timeout
        waiter = asyncio.wrap_future(job)
        done, _ = await asyncio.wait({waiter}, timeout=limit)
        if not done:
            started = not (cancel and job.cancel())
            waiter.add_done_callback(_consume)
            raise UpstreamTimeout(what, limit, started)
        return waiter.result()

    async def call(self, what: str, operation: Callable[..., T], *args: Any) -> T:
        return await self.wait(self.start(operation, *args), what)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _consume(future: asyncio.Future[Any]) -> None:
    """An abandoned wait's outcome is read, so asyncio does not log it as never retrieved."""
    if not future.cancelled():
        future.exception()
