"""Where the per-story worker runs: local worker processes (default) or Ray tasks on a cluster.

Both engines run the same function, :func:`.processing.run_story_job`, on the same
:class:`.processing.StoryJob` objects, so they write the same per-story cache entries (the
Parquet shards are assembled from those afterwards, by the caller) and a rerun resumes from
whatever entries exist, whichever engine wrote them. The worker never raises: a bad clip comes
back as an outcome with a failure, and ends up in ``failures.jsonl`` the same way.

* ``local``: ``num_proc`` processes in all: this one, already warm, and ``num_proc - 1``
  worker processes (spawned: torch and the decoders do not survive fork) that start once and
  take stories one after the other from one queue, so the imports and the VAD model load are
  paid once per worker, not per story, and while they start this process is already working.
  Each process uses ``cpu_count // num_proc`` torch threads, so N processes do not
  oversubscribe the cores. A worker that dies mid-story (killed, out of memory) breaks the pool:
  its story is retried once in a worker of its own, then reported as a failure.
* ``ray``: one Ray task per story (``num_cpus=1``; torch in the task uses the CPUs Ray assigned
  it). Ray reuses its worker processes across tasks, and retries a task whose worker died
  (``max_retries``). ``ray_address=None`` starts a local Ray instance; ``"auto"`` or
  ``"ray://host:10001"`` joins a running cluster, whose nodes must have this package installed
  and see the output folder at the same path (a shared file system).
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Callable, Sequence
from typing import Literal, get_args

from tqdm.auto import tqdm

from .processing import StoryJob, StoryOutcome, run_story_job

Engine = Literal["local", "ray"]
ENGINES: tuple[str, ...] = get_args(Engine)
DEFAULT_ENGINE: Engine = "local"
POOL_RETRIES = 1  # fresh pools for the stories of a pool whose worker died
RAY_MAX_RETRIES = 3  # Ray retries a task whose worker process died this many times
Worker = Callable[[StoryJob], StoryOutcome]


def check_engine(engine: str, ray_address: str | None = None) -> Engine:
    """``engine`` when it names one, and ``ray_address`` only with Ray; ValueError otherwise."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if ray_address is not None and engine != "ray":
        raise ValueError("--ray-address needs --engine ray")
    return engine  # type: ignore[return-value]


def threads_per_worker(num_proc: int, cpus: int | None = None) -> int:
    """Torch threads for each of ``num_proc`` workers sharing ``cpus`` cores (at least one)."""
    return max(1, (cpus or os.cpu_count() or 1) // max(num_proc, 1))


# ----------------------------------------------------------------------------------------
# Local worker processes
# ----------------------------------------------------------------------------------------


def _start_worker(torch_threads: int) -> None:
    """Pool initializer: thread count, then the imports and the VAD model, once per worker."""
    import torch

    torch.set_num_threads(torch_threads)
    from . import processing  # noqa: F401 - the heavy imports, here rather than in the first story
    from .voice_activity import _onnx_session

    _onnx_session()


def _ready() -> bool:
    return True


def _run_with_helpers(
    jobs: Sequence[StoryJob], worker: Worker, helpers: int, torch_threads: int, bar, work_here: bool
) -> tuple[list[StoryOutcome], list[StoryJob]]:
    """Run the jobs in ``helpers`` worker processes, and in this process too when ``work_here``.

    Jobs are handed out one at a time from one queue, so a worker that is still starting (its
    imports take seconds) takes none while this process, already warm, gets going at once.
    Returns the outcomes, and the jobs a dead worker took (its pool is then broken).
    """
    import multiprocessing
    import threading
    from collections import deque
    from concurrent.futures.process import BrokenProcessPool

    queue, lost, outcomes = deque(jobs), [], []
    lock = threading.Lock()
    state = {"in_workers": 0, "closed": False}

    def take(for_worker: bool) -> StoryJob | None:
        with lock:
            if state["closed"] or not queue:
                return None
            state["in_workers"] += for_worker
            return queue.popleft()

    def record(outcome: StoryOutcome, from_worker: bool) -> None:
        with lock:
            outcomes.append(outcome)
            state["in_workers"] -= from_worker
            bar.update(1)

    ctx = multiprocessing.get_context("spawn")  # torch and the decoders do not survive fork well
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=helpers, mp_context=ctx, initializer=_start_worker, initargs=(torch_threads,)
    )

    def feed() -> None:  # one thread per helper process: hands it the next job when it is free
        try:
            pool.submit(_ready).result()  # a job taken before the worker has started would wait for its imports
        except (BrokenProcessPool, concurrent.futures.CancelledError):
            return
        while (job := take(for_worker=True)) is not None:
            try:
                record(pool.submit(worker, job).result(), from_worker=True)
            except BrokenProcessPool:
                with lock:
                    lost.append(job)
                    state["in_workers"] -= 1
                return

    feeders = [threading.Thread(target=feed, daemon=True) for _ in range(helpers)]
    for t in feeders:
        t.start()
    if work_here:
        while (job := take(for_worker=False)) is not None:
            record(worker(job), from_worker=False)
        with lock:  # all done here and no worker holds a job: do not wait for workers still starting
            state["closed"] = idle = state["in_workers"] == 0
            lost_here = list(lost)
        if idle:
            pool.shutdown(wait=False, cancel_futures=True)
            return outcomes, lost_here
    for t in feeders:
        t.join()
    # every outcome is in: the workers' exit (about a second of interpreter teardown each) need not hold up the
    # caller, who goes on to the Parquet assembly; the executor reaps them in the background
    pool.shutdown(wait=False)
    with lock:  # a broken pool stops its feeders: what they had not taken is left in the queue
        lost += list(queue)
    return outcomes, lost


def run_local(
    jobs: Sequence[StoryJob],
    num_proc: int = 1,
    progress: bool = True,
    worker: Worker = run_story_job,
    torch_threads: int | None = None,
) -> list[StoryOutcome]:
    """Run ``worker`` on every job with ``num_proc`` processes in all: this one and ``num_proc - 1`` workers.

    ``torch_threads``: per process (default: the cores divided among the processes; with
    ``num_proc`` <= 1, torch's own default is kept unless given). Stories whose worker process
    died are retried once, each in a worker process of its own, then reported as failures.
    """
    import torch

    bar = tqdm(total=len(jobs), desc="stories", unit="story", disable=not progress)
    previous_threads = torch.get_num_threads()
    threads = torch_threads or (threads_per_worker(num_proc) if num_proc > 1 else previous_threads)
    torch.set_num_threads(threads)
    try:
        if num_proc <= 1 or len(jobs) <= 1:
            outcomes = []
            for job in jobs:
                outcomes.append(worker(job))
                bar.update(1)
            return outcomes
        outcomes, lost = _run_with_helpers(jobs, worker, min(num_proc - 1, len(jobs)), threads, bar, work_here=True)
        for _ in range(POOL_RETRIES):
            retried = [_run_with_helpers([job], worker, 1, threads, bar, work_here=False) for job in lost]
            outcomes += [o for done, _ in retried for o in done]
            lost = [job for _, left in retried for job in left]
        for job in lost:
            outcomes.append(
                StoryOutcome.failed(
                    job,
                    f"the worker process died while processing this story ({1 + POOL_RETRIES} tries): killed, or out of memory?",
                )
            )
            bar.update(1)
        return sorted(outcomes, key=lambda o: o.index)
    finally:
        torch.set_num_threads(previous_threads)
        bar.close()


# ----------------------------------------------------------------------------------------
# Ray
# ----------------------------------------------------------------------------------------


def _ray_task(worker: Worker, job: StoryJob) -> StoryOutcome:
    import ray
    import torch

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    return worker(job)


def connect_ray(address: str | None = None, **init_kwargs) -> None:
    """Join the Ray cluster at ``address`` (``"auto"``, ``"ray://host:10001"``), or start a local
    one when ``address`` is None; nothing when this process is connected already."""
    try:
        import ray
    except ImportError as err:  # pragma: no cover - ray is a dependency; kept for slim installs
        raise ValueError("--engine ray needs Ray installed: pip install 'ray>=2.50'") from err
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, **init_kwargs)
    except ConnectionError as err:
        raise ValueError(f"cannot connect to the Ray cluster at {address!r}: {err}") from err


def run_ray(
    jobs: Sequence[StoryJob],
    ray_address: str | None = None,
    progress: bool = True,
    worker: Worker = run_story_job,
    max_retries: int = RAY_MAX_RETRIES,
) -> list[StoryOutcome]:
    """Run ``worker`` on every job as a Ray task (one CPU each); outcomes in job order.

    A task whose worker process died is retried up to ``max_retries`` times by Ray; after that,
    or on any other Ray error, the story is reported as a failure like a bad clip.
    """
    import ray

    connect_ray(ray_address)
    task = ray.remote(num_cpus=1, max_retries=max_retries)(_ray_task)
    worker_ref = ray.put(worker)
    refs = {task.remote(worker_ref, job): job for job in jobs}
    outcomes: list[StoryOutcome] = []
    waiting = list(refs)
    with tqdm(total=len(jobs), desc="stories (ray)", unit="story", disable=not progress) as bar:
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            for ref in ready:
                job = refs[ref]
                try:
                    outcomes.append(ray.get(ref))
                except ray.exceptions.RayError as err:
                    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                    outcomes.append(
                        StoryOutcome.failed(
                            job, f"Ray task failed after {max_retries} retries: {type(err).__name__}: {reason}"
                        )
                    )
                bar.update(1)
    return sorted(outcomes, key=lambda o: o.index)


def run_jobs(
    jobs: Sequence[StoryJob], engine: Engine = DEFAULT_ENGINE, num_proc: int = 1, ray_address: str | None = None, progress: bool = True,
    worker: Worker = run_story_job, torch_threads: int | None = None,
) -> list[StoryOutcome]:  # fmt: skip
    """Run the per-story ``worker`` on every job with the chosen engine; one outcome per job, in job order."""
    check_engine(engine, ray_address)
    if engine == "ray":
        return run_ray(jobs, ray_address, progress, worker)
    return run_local(jobs, num_proc, progress, worker, torch_threads)


__all__ = [
    "ENGINES",
    "DEFAULT_ENGINE",
    "Engine",
    "check_engine",
    "threads_per_worker",
    "run_local",
    "run_ray",
    "connect_ray",
    "run_jobs",
]
