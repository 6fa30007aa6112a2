"""Run creation: ``POST /v1/runs``, then the run's config — once, for the engine and for sync.

:func:`create_run` is the protocol (used by the :class:`RunCreator` actor of a logger and by
``metrana sync``); the actor adds what a live logger needs around it: say at once when the
service cannot be reached (rather than after the whole retry budget), let ``init()`` stop
waiting then, and fall back to the spool when the budget is spent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import httpx
import trio

from .._auth_refusal import auth_refusal
from .._config import is_local_url
from .._delivery import Delivery
from .._exceptions import (
    MetranaApiError,
    MetranaConnectionError,
    MetranaError,
    MetranaOrchestrationIdMismatchError,
    MetranaRunAlreadyExistsError,
)
from .._scheme import TLS_SERVER, speaks_tls, wrong_scheme_advice
from .._stats import Counters
from .._transport import NO_ANSWER, RetryPolicy, post_with_retries
from .._wire import encode_update, is_ok
from .series_ends import fetch_ends
from .step_counter import StoredEnds

__all__ = ["RunCreator", "RunSpec", "create_run"]

ATTRIBUTES_PER_REQUEST = 1000
# Statuses of POST /v1/runs that mean "this URL is not a Metrana ingestion service".
_NOT_METRANA = (404, 405, 501)

Post = Callable[[str, bytes], Awaitable[httpx.Response]]


@attrs.frozen
class RunSpec:
    """What creating a run sends: its names, experiment, aggregation rules and config."""

    workspace: str
    project: str
    run_name: str
    experiment: str | None = None
    aggregation_rules: tuple[dict[str, Any], ...] = ()
    attributes: tuple[dict[str, Any], ...] = ()
    orchestration_id: str | None = None  # the job whose processes write the run together

    @property
    def name(self) -> str:
        return f"{self.workspace}/{self.project}/{self.run_name}"

    def manifest(self, ingestion_url: str) -> dict[str, Any]:
        """The spool's ``run.json``: enough for ``metrana sync`` to create the run."""
        return {"workspace": self.workspace, "project": self.project, "run_name": self.run_name,
                "experiment": self.experiment, "ingestion_url": ingestion_url,
                "aggregation_rules": list(self.aggregation_rules),
                "attributes": list(self.attributes), "orchestration_id": self.orchestration_id}

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> RunSpec:
        return cls(manifest["workspace"], manifest["project"], manifest["run_name"],
                   manifest.get("experiment"), tuple(manifest.get("aggregation_rules") or ()),
                   tuple(manifest.get("attributes") or ()), manifest.get("orchestration_id"))

    def create_body(self) -> bytes:
        run: dict[str, Any] = {"workspace": self.workspace, "project": self.project,
                               "runName": self.run_name}
        if self.experiment:
            run["experiment"] = self.experiment
        if self.orchestration_id:
            run["orchestrationIdentifier"] = self.orchestration_id
        body: dict[str, Any] = {"run": run, "createProjectIfMissing": True}
        if self.aggregation_rules:
            body["aggregationRules"] = list(self.aggregation_rules)
        return json.dumps(body).encode()


CREATED, JOINED, RESUMED = "created", "joined", "resumed"


def _creator_job(response: httpx.Response) -> str | None:
    """The orchestration id a 409 says the run was created with ("" for none; None when the
    service does not say)."""
    try:
        body = response.json()
    except ValueError:
        return None
    found = body.get("orchestrationIdentifier") if isinstance(body, dict) else None
    return found if isinstance(found, str) else None


def _jobs(ours: str | None, theirs: str | None) -> str:
    """Both jobs' ids, for a message about a run another job created."""
    return (f"it was created by job {theirs or '(none)'!s}, and this process belongs to job "
            f"{ours or '(none)'!s}")


async def create_run(post: Post, spec: RunSpec, session_id: int, *,
                     refuse_existing: bool = False) -> tuple[str, str | None]:
    """Create the run (or find it) and send its config. Returns :data:`CREATED`,
    :data:`JOINED` (it exists, created by another process of this job: same orchestration id)
    or :data:`RESUMED` (it exists from before: a rerun), and the job that created an existing
    run ("" for none, None when the service does not say).

    Raises:
        MetranaRunAlreadyExistsError: it exists from before and ``refuse_existing``.
        MetranaApiError: the service refused, or the URL is not a Metrana service.
        MetranaConnectionError: from ``post``, when the service cannot be reached.
    """
    response = await post("/runs", spec.create_body())
    resumed = response.status_code == 409
    theirs = _creator_job(response) if resumed else None
    joined = resumed and bool(spec.orchestration_id) and theirs == spec.orchestration_id
    if resumed and refuse_existing and not joined:
        if spec.orchestration_id and theirs is not None:
            raise MetranaOrchestrationIdMismatchError(
                f"run {spec.name} already exists: {_jobs(spec.orchestration_id, theirs)}, and "
                "resume_strategy is Never; give this job another run_name (or the same "
                "orchestration_id in every process of one job), or resume_strategy='Allow' "
                "to add to that run")
        raise MetranaRunAlreadyExistsError(
            f"run {spec.name} already exists and resume_strategy is Never; choose another "
            "run_name or resume_strategy='Allow'")
    if (response.status_code == 400 and response.request.url.scheme == "http"
            and await speaks_tls(str(response.request.url))):  # as nginx answers plain HTTP
        root = str(response.request.url).removesuffix("/runs").removesuffix("/v1")
        raise MetranaApiError(f"{wrong_scheme_advice(root, TLS_SERVER)} (it answered HTTP 400)",
                              status=400, body=response.text[:2000])
    if response.status_code in _NOT_METRANA:
        raise MetranaApiError(
            f"{response.request.url} answered HTTP {response.status_code}: this URL does not "
            "look like a Metrana ingestion service. Check ingestion_url (the local server is "
            "`metrana serve`, at http://127.0.0.1:8787 by default; give the server's base URL, "
            "without /v1)", status=response.status_code, body=response.text[:2000])
    refused = auth_refusal(response)
    if refused is not None:  # a wrong key, or one outside its workspace: say which
        raise MetranaApiError(f"creating run {spec.name}: {refused}",
                              status=response.status_code, body=response.text[:2000])
    if not resumed and not is_ok(response.status_code):
        raise MetranaApiError(
            f"creating run {spec.name} failed with HTTP {response.status_code}: "
            f"{response.text[:500]}", status=response.status_code, body=response.text[:2000])
    for start in range(0, len(spec.attributes), ATTRIBUTES_PER_REQUEST):
        chunk = spec.attributes[start:start + ATTRIBUTES_PER_REQUEST]
        body = encode_update(session_id, spec.workspace, spec.project, spec.run_name, (), chunk)
        response = await post("/runs:update", body)
        if not is_ok(response.status_code):
            raise MetranaApiError(
                f"sending the config of run {spec.name} failed with HTTP "
                f"{response.status_code}: {response.text[:500]}", status=response.status_code)
    return (JOINED if joined else RESUMED if resumed else CREATED), theirs


class RunCreator:
    """The logger's actor that creates its run, once, as soon as it starts."""

    def __init__(self, client: httpx.AsyncClient, spec: RunSpec, session_id: int, *,
                 policy: RetryPolicy, recovery_policy: RetryPolicy, counters: Counters,
                 delivery: Delivery, refuse_existing: bool, say: Callable[[str, str], None],
                 on_fatal: Callable[[BaseException], None], ends: StoredEnds | None = None,
                 ) -> None:
        self._client = client
        self._spec = spec
        self._session_id = session_id
        self._policy = policy
        self._recovery_policy = recovery_policy
        self._counters = counters
        self._delivery = delivery
        self._refuse_existing = refuse_existing
        self._say = say
        self._on_fatal = on_fatal
        # Where the series of a resumed run end (None: not asked, e.g. in a forked child);
        # its ``ready`` is set however creation ends, so the StepCounter never waits for long.
        self._ends = ends
        self.scope = trio.CancelScope()  # cancelled when nothing more will be sent
        self.done = trio.Event()  # init() may stop waiting: created, refused, or unreachable
        self.on_done: Callable[[], None] = lambda: None  # told the same (thread-mode init())
        self.error: BaseException | None = None
        self.resumed = False
        self.joined = False  # it exists, created by another process of the same job
        self.unreachable: str | None = None  # why the service could not be reached, if so
        self.joins_parent = False  # a forked worker's session of its parent's run: it exists
        self.side: trio.Nursery | None = None  # where the scheme check runs (set by the engine)
        self._scheme_checked = False

    def _service_url(self) -> str:
        """The ingestion URL as the user gave it (the client's base URL is ``<it>/v1``)."""
        return str(self._client.base_url).rstrip("/").removesuffix("/v1")

    def _release_init(self) -> None:
        if not self.done.is_set():
            self.done.set()
            self.on_done()

    def _heard_failure(self, attempt: int, reason: str, unreachable: bool) -> None:
        """The first failure to reach the service: say at once what is wrong."""
        if reason == NO_ANSWER and not self._scheme_checked and self.side is not None:
            self._scheme_checked = True
            self.side.start_soon(self._check_scheme)
        if self.unreachable is not None or self._delivery.run_ready.is_set() or not unreachable:
            return
        self.unreachable = reason
        url = self._service_url()
        spool = self._delivery.can_spool
        kept = "points are kept and spooled" if spool else "points are kept in memory"
        advice = wrong_scheme_advice(url, reason)
        if advice is not None:
            self._say("WARNING", f"{advice}; {kept} meanwhile")
        else:
            hint = (" — is `metrana serve` running? (start it with `metrana serve`)"
                    if is_local_url(url) else "")
            self._say("WARNING", f"cannot reach {url} ({reason}){hint}; {kept} and sent when "
                                 "it answers")
        self._release_init()  # no point making init() wait for a service that is not there

    async def _check_scheme(self) -> None:
        """An ``http://`` request got no answer: if the port speaks TLS, that is why."""
        url = self._service_url()
        if url.lower().startswith("http://") and await speaks_tls(url):
            self._heard_failure(0, TLS_SERVER, True)

    async def _post(self, persistent: bool, path: str, body: bytes) -> httpx.Response:
        policy = self._recovery_policy if persistent else self._policy
        # The first try gives up at a definite refusal when points can wait on disk: they are
        # spooled at once, and Recovery asks again with backoff.
        give_up = not persistent and self._delivery.can_spool
        while True:
            try:
                return await post_with_retries(self._client, path, body, policy, self._counters,
                                               on_failure=self._heard_failure,
                                               give_up_if_definite=give_up)
            except MetranaConnectionError:
                if not persistent:
                    raise
                # however long the service is away: the backoff inside paces the probing

    async def ensure(self, *, persistent: bool) -> None:
        """Create the run unless it exists already (Recovery calls this before replaying)."""
        if self._delivery.run_ready.is_set():
            return
        outcome, theirs = await create_run(
            lambda path, body: self._post(persistent, path, body), self._spec,
            self._session_id, refuse_existing=self._refuse_existing)
        self.joined = outcome == JOINED
        self.resumed = outcome != CREATED
        self.unreachable = None
        self._delivery.run_created()
        ours = self._spec.orchestration_id
        if self.joined:
            self._say("DEBUG", f"joined run {self._spec.name} of job {ours} (pid {os.getpid()})")
        elif self.resumed and self.joins_parent:
            # The parent created it a moment ago: not a resume, nothing the user must know.
            self._say("DEBUG", f"forked worker (pid {os.getpid()}) joined run {self._spec.name}")
        elif self.resumed:
            self._say("SUCCESS", f"resuming run {self._spec.name}, which already exists at "
                                 f"{self._service_url()}: new points of its series are "
                                 "stored after the ones it has (resume_strategy='Never' refuses "
                                 "instead)" + (f"; {_jobs(ours, theirs)}" if ours and theirs is not None
                                              else ""))
        else:
            self._say("DEBUG", f"run {self._spec.name} created")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            with self.scope:
                await self.ensure(persistent=False)
                if self.resumed and self._ends is not None:
                    spec = self._spec
                    found = await fetch_ends(
                        self._client, self._service_url(), spec.workspace, spec.project,
                        spec.run_name, policy=self._policy, counters=self._counters,
                        say=self._say)
                    if found is not None:
                        self._ends.by_series = found
        except MetranaConnectionError as exc:
            if not self._delivery.can_spool:
                self._fail(exc)
            else:
                # Refused, or unreachable for the whole retry budget: spool until it answers;
                # Recovery creates the run before replaying. (Said already when refused.)
                self._delivery.enter_outage(self.unreachable or str(exc),
                                            announce=not exc.definite)
        except MetranaError as exc:
            self._fail(exc)
        finally:
            if self._ends is not None:
                self._ends.ready.set()
            self._release_init()

    def _fail(self, error: BaseException) -> None:
        self.error = error
        self._on_fatal(error)
