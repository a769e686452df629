"""`autoresearch worker`'s process: a Prefect process worker that runs one flow, the tool's own
`flows.remote.evaluate` from this install, and nothing else.

Prefect's process worker runs whatever a flow run on its pool asks for: the deployment's pull
steps (`run_shell_script` among them), then its entrypoint, with the command, folder and
environment that the work pool's template and the job variables set. Whoever can create a
deployment on the pool would run code here, outside any sandbox, as this user, with this
worker's secrets. This worker refuses before it starts any process: a flow run whose deployment
is not `evaluate` at `flows.remote.evaluate`, has pull steps or job variables, or whose
parameters the campaign did not sign (steps.worker). What it runs is fixed here, never read
from the pool: `python -m autoresearch.worker execute`, which imports the flow from this
install (not from the deployment's storage or pull steps; crash and cancellation hooks
likewise), in a fresh temporary folder, with this process's environment (an allowlist made by
`autoresearch worker`) and Prefect's settings.

    python -m autoresearch.worker --pool NAME [--limit N]   # the worker
    python -m autoresearch.worker execute                   # one flow run: PREFECT__FLOW_RUN_ID
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import anyio
import anyio.abc
from prefect.logging.loggers import flow_run_logger
from prefect.runner._flow_run_executor import FlowRunExecutionResult, FlowRunExecutorContext
from prefect.runner._process_manager import ProcessHandle
from prefect.runner._starter_engine import EngineCommandStarter
from prefect.utilities.processutils import command_to_string
from prefect.workers.process import ProcessJobConfiguration, ProcessWorker, ProcessWorkerResult

from core import credentials
from steps import worker as remote
from steps.worker import Refused

if TYPE_CHECKING:
    from prefect.client.schemas.objects import Flow as APIFlow
    from prefect.client.schemas.objects import FlowRun, WorkPool
    from prefect.client.schemas.responses import DeploymentResponse
    from prefect.flows import Flow

COMMAND = command_to_string([sys.executable, "-P", "-m", "autoresearch.worker", "execute"])


def refusal(
    flow_run: FlowRun, deployment: DeploymentResponse | None, flow: APIFlow | None, key: bytes
) -> str | None:
    """Why this worker will not run `flow_run`, or None when it will."""
    if deployment is None:
        return "it has no deployment"
    variables = (deployment.job_variables or {}) | (flow_run.job_variables or {})
    why = remote.foreign(
        deployment.entrypoint, flow.name if flow else None, deployment.pull_steps, variables
    )
    if why:
        return why
    try:
        remote.check_request(key, flow_run.parameters)
    except Refused as exc:
        return str(exc)
    return None


class EvaluateJobConfiguration(ProcessJobConfiguration):
    """The pool's job configuration, checked and then overridden: command, folder and
    environment are this worker's own."""

    def prepare_for_flow_run(
        self,
        flow_run: FlowRun,
        deployment: DeploymentResponse | None = None,
        flow: APIFlow | None = None,
        work_pool: WorkPool | None = None,
        worker_name: str | None = None,
        worker_id: UUID | None = None,
    ) -> None:
        why = refusal(flow_run, deployment, flow, credentials.signing_key(create=False))
        if why:
            name = deployment.name if deployment else "-"
            flow_run_logger(flow_run).error("refused flow run %s (%s): %s", flow_run.id, name, why)
            raise Refused(f"deployment {name}: {why}")  # the worker marks the run Crashed
        super().prepare_for_flow_run(
            flow_run, deployment, flow, work_pool, worker_name, worker_id=worker_id
        )
        self.command = COMMAND
        self.env = {}  # the child gets os.environ (an allowlist) and Prefect's settings
        self.working_dir = None


async def _own_flow(flow_run: FlowRun) -> Flow[..., Any]:
    """The flow behind every run this worker starts (for its crash and cancellation hooks),
    imported from this install: never loaded through the deployment, whose pull steps would
    run in this process."""
    from flows.remote import evaluate

    return evaluate


class EvaluateWorker(ProcessWorker):
    """A process worker (pool type `process`) that runs `flows.remote.evaluate` only."""

    job_configuration = EvaluateJobConfiguration

    @classmethod
    def __dispatch_key__(cls) -> str:
        return "autoresearch-evaluate"  # not "process": Prefect's own worker stays registered

    async def run(
        self,
        flow_run: FlowRun,
        configuration: ProcessJobConfiguration,
        task_status: anyio.abc.TaskStatus[int] | None = None,
    ) -> ProcessWorkerResult:
        """ProcessWorker.run with its fixed-command path only, and our flow for the hooks."""
        status = task_status if task_status is not None else anyio.TASK_STATUS_IGNORED
        execution: FlowRunExecutionResult | None = None
        with tempfile.TemporaryDirectory(prefix="autoresearch-run-") as folder:
            async with FlowRunExecutorContext() as ctx:
                starter = EngineCommandStarter(
                    command=COMMAND,
                    cwd=Path(folder),
                    env=configuration.env,
                    stream_output=configuration.stream_output,
                    control_channel=ctx.control_channel,
                )
                executor = ctx.create_executor(
                    flow_run, starter, resolve_flow=_own_flow, propose_submitting=False
                )

                async def execute(
                    *, task_status: anyio.abc.TaskStatus[ProcessHandle] = anyio.TASK_STATUS_IGNORED
                ) -> None:
                    nonlocal execution
                    execution = await executor.submit(task_status=task_status)

                async with anyio.create_task_group() as group:
                    handle = await group.start(execute)
                    if handle.pid is None:
                        raise RuntimeError("the flow run's process has no pid")
                    status.started(handle.pid)
        if execution is None or execution.status_code is None:
            raise RuntimeError("the flow run's process did not start")
        return ProcessWorkerResult(
            status_code=execution.status_code, identifier=str(execution.handle.pid)
        )


def execute(flow_run_id: UUID) -> None:
    """One flow run of `evaluate`, as `python -m prefect.engine` runs one, but with the flow
    imported from this install instead of loaded through its deployment."""
    from prefect._internal.control_listener import configure_from_env
    from prefect.engine import handle_engine_signals
    from prefect.flow_engine import load_flow_run, run_flow

    from flows.remote import evaluate

    configure_from_env()
    with handle_engine_signals(flow_run_id):
        flow_run = load_flow_run(flow_run_id=flow_run_id)
        result = run_flow(evaluate, flow_run=flow_run, error_logger=flow_run_logger(flow_run))
        if asyncio.iscoroutine(result):
            asyncio.run(result)


async def serve(pool: str, limit: int | None) -> None:
    await EvaluateWorker(work_pool_name=pool, limit=limit).start()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["execute"]:
        execute(UUID(os.environ["PREFECT__FLOW_RUN_ID"]))
        return
    parser = argparse.ArgumentParser(prog="python -m autoresearch.worker")
    parser.add_argument("--pool", required=True)
    parser.add_argument("--limit", type=int)
    ns = parser.parse_args(args)
    try:
        credentials.signing_key(create=False)  # no key, no work: say so now, not per run
    except credentials.MissingSecret as exc:
        sys.exit(str(exc))
    from prefect.utilities.processutils import setup_signal_handlers_worker

    setup_signal_handlers_worker(os.getpid(), "the autoresearch worker", print)
    try:
        asyncio.run(serve(ns.pool, ns.limit))
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass


if __name__ == "__main__":
    main()
