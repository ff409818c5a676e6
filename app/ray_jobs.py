"""Batch jobs on Ray (``--ray local|auto|ADDRESS``): a Ray Data pipeline of the rows, each with
its input index, through a pool of actors that each build a job's components once
(:mod:`app.batch`: the generator, an in-process vLLM engine or a client of the ``--llm-url``
servers, plus retriever and judge) and process batches of rows with the single-process code.
The driver collects the outputs, puts them back in input order and writes them; a row whose
batch fails is retried alone, and one that still fails, or whose actor died, becomes an error
row, never a lost one.

Ray is imported only here, and only when ``--ray`` is given (``citerag --help`` must not load
it). Every worker must be able to read the index folder (or the Qdrant server the index points
at) and import citerag: on one machine they share the driver's files and ``sys.path``; on a
cluster, install citerag and put the index where every node sees it.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from app.batch import BatchJob, BatchWorker, process_or_split
from app.cli_common import RAY_BATCH_SIZE
from pipeline.errors import CiteragError, ClusterUnavailableError, ConfigError

log = logging.getLogger("citerag.ray")

#: Object-store memory of a ``local`` instance: rows are small JSON; Ray's default (30% of RAM)
#: would reserve gigabytes of shared memory the engines need.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2
#: Environment variables the workers' engines and judges read, passed to every actor (on a
#: cluster a worker does not inherit the driver's environment).
ENV_PREFIXES = ("VLLM_", "HF_", "CITERAG_", "TRANSFORMERS_", "TOKENIZERS_", "ORT_")
ENV_NAMES = ("DO_NOT_TRACK", "MKL_NUM_THREADS")
#: Seconds to wait for a cluster's address to accept a connection before giving up.
CONNECT_TIMEOUT_S = 5.0


def default_workers() -> int:
    """One actor per two cores (each engine runs its forward passes on about one core and the
    retriever, judge and Ray itself need the rest), at least one."""
    return max(1, (os.cpu_count() or 1) // 2)


def worker_env() -> dict[str, str]:
    """The citerag, vLLM and Hugging Face variables of this process, with vLLM's CPU defaults."""
    from pipeline.generators.base import vllm_env

    env = dict(vllm_env(environ=dict(os.environ)))
    return {k: v for k, v in env.items() if k.startswith(ENV_PREFIXES) or k in ENV_NAMES}


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of ``host:port`` or ``ray://host:port``; None when there is no port."""
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        port = parts.port
    except ValueError:
        return None
    return (parts.hostname, port) if parts.hostname and port else None


def _unreachable(address: str, why: str) -> ClusterUnavailableError:
    return ClusterUnavailableError(
        f"cannot reach the Ray cluster at {address} ({why}): start it (`ray start --head` on its head node) "
        "and pass its address (host:6379, or ray://host:10001 for Ray Client), or use --ray local"
    )


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail at once when ``address`` accepts no connection: ``ray.init`` would wait minutes."""
    hp = _host_port(address)
    if hp is None:
        raise ConfigError(f"--ray: {address!r} is not local, auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection(hp, timeout=timeout).close()
    except OSError as exc:
        raise _unreachable(address, exc.strerror or str(exc)) from None


def connect(target: str, level: int = logging.WARNING) -> Any:
    """Start (``local``) or join (``auto``, an address) Ray, with the workers' environment;
    returns the ``ray`` module. Ray is told about no GPU on a local instance and actors ask
    for none, so an engine never waits for one."""
    quiet = level > logging.INFO
    # Ray Data reads its level when it configures its loggers (at import).
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR" if quiet else logging.getLevelName(level))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address: str | None = None
    if target == "auto":
        address = os.environ.get("RAY_ADDRESS") or "auto"
    elif target != "local":
        address = target
    if address not in (None, "auto"):
        check_reachable(address)
    import ray

    opts: dict[str, Any] = {
        "runtime_env": {"env_vars": worker_env()},
        "logging_level": logging.ERROR if quiet else level,
        "log_to_driver": not quiet,
    }
    try:
        if address is None:
            # address="local": a new instance even when RAY_ADDRESS names a cluster.
            ray.init(address="local", num_cpus=os.cpu_count() or 1, num_gpus=0, include_dashboard=False,
                     object_store_memory=LOCAL_OBJECT_STORE_BYTES, **opts)  # fmt: skip
        else:
            ray.init(address=address, **opts)
    except ConnectionError as exc:
        raise _unreachable(address or "local", str(exc).splitlines()[0] if str(exc) else "no cluster") from None
    return ray


@dataclass(frozen=True)
class StartupFailure:
    """What a worker whose components could not be built (no index, no model, no server on
    that node) returns for every row: the driver raises the error, with its exit code."""

    error: CiteragError


class RayWorker:
    """A Ray Data actor: the job's components, built once, applied to batches of pickled items."""

    def __init__(self, job: BatchJob, level: int) -> None:
        from app.cli_common import quiet_libraries

        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("citerag").setLevel(level)
        quiet_libraries(level)
        self.job = job
        self.worker: BatchWorker | None = None
        self.failure: StartupFailure | None = None
        try:
            self.worker = job.start()
        except CiteragError as exc:  # an actor that dies in __init__ takes only Ray's message along
            self.failure = StartupFailure(exc)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        items = [pickle.loads(bytes(b)) for b in batch["item"]]
        if self.worker is None:
            outputs: list[Any] = [self.failure] * len(items)
        else:
            outputs = process_or_split(self.job, self.worker, items)
        out = np.empty(len(outputs), dtype=object)
        out[:] = [pickle.dumps(o) for o in outputs]
        return {"index": batch["index"], "output": out}


def _pipeline(ray: Any, job: BatchJob, items: Sequence[Any], level: int, workers: int, batch_size: int) -> Any:
    """rows (index, pickled item) -> map_batches over an actor pool -> rows (index, pickled output)."""
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    return ray.data.from_items(
        [{"index": i, "item": pickle.dumps(it)} for i, it in enumerate(items)],
        override_num_blocks=max(1, min(len(items), workers * 4)),
    ).map_batches(
        RayWorker,
        fn_constructor_args=(job, level),
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=min(1.0, cpus / workers),
        num_gpus=0,
        max_restarts=0,  # a dead actor's rows become error rows
    )


def run_on_ray(
    job: BatchJob,
    items: Sequence[Any],
    *,
    target: str,
    workers: int | None = None,
    batch_size: int = RAY_BATCH_SIZE,
    progress: bool = True,
) -> list[Any]:
    """Every item's output, in input order, computed by ``workers`` actors on Ray."""
    from pipeline.progress import progress_bar

    workers = workers or default_workers()
    if workers < 1 or batch_size < 1:
        raise ConfigError(f"--ray-workers and --ray-batch-size must be positive (got {workers}, {batch_size})")
    level = logging.getLogger("citerag").getEffectiveLevel()
    ray = connect(target, level)
    try:
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # ours follows the logger level
        with warnings.catch_warnings():
            # max_restarts goes through the deprecated ray_remote_args; without it Ray restarts
            # a dead actor (building its engine again) and warns on every run that the restart
            # could lose the constructor arguments.
            warnings.simplefilter("ignore", DeprecationWarning)
            ds = _pipeline(ray, job, items, level, workers, batch_size)
        outputs: list[Any] = [None] * len(items)
        failure = "no output came back"
        with progress_bar(total=len(items), desc=f"ray ({workers} workers)", enabled=progress, unit="row") as bar:
            try:
                for row in ds.iter_rows():
                    output = pickle.loads(bytes(row["output"]))
                    if isinstance(output, StartupFailure):
                        raise output.error  # the command's error, with its exit code
                    outputs[int(row["index"])] = output
                    bar.update(1)
            except CiteragError:
                raise
            except Exception as exc:  # an actor died (out of memory, a crash in native code)
                failure = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
                log.error("the Ray job stopped: %s", failure)
    finally:
        ray.shutdown()
    return [o if o is not None else job.error_output(it, f"lost on Ray: {failure}") for o, it in zip(outputs, items)]
