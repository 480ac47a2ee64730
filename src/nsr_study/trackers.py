"""Live views of a cell's training. Every per-step record that goes to ``metrics.jsonl`` also goes
to the trackers named in ``report.trackers``: TensorBoard (the default), and MLflow and Weights &
Biases through their own libraries (the ``trackers`` extra), as TRL's ``report_to`` does.

Where MLflow and W&B write is their own settings' business (``MLFLOW_TRACKING_URI``,
``WANDB_MODE``, ``WANDB_API_KEY``...), so a user's server, or an offline store on a cluster with no
network, works unchanged. A resumed cell continues the same MLflow/W&B run: its id is kept in the
cell's work folder, beside the checkpoints."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from nsr_study.config import flat

log = logging.getLogger(__name__)

TRACKERS = ("tensorboard", "mlflow", "wandb")


def run_name(cell: dict) -> str:
    """The cell's name in every tracker: ``model/objective/seed<s>``."""
    return f"{cell['model_name']}/{cell['objective']}/seed{cell['seed']}"


def scalars(record: dict) -> dict[str, float]:
    """The record's numbers (the step excluded): what a tracker can plot."""
    return {k: float(v) for k, v in record.items() if k != "step" and isinstance(v, (int, float))}


def kept_id(work: Path, tracker: str, new) -> str:
    """The tracker's run id for this cell, made by ``new()`` on the first attempt and read back
    on every resumed one."""
    path = work / f"{tracker}_run_id"
    if not path.is_file():
        path.write_text(new())
    return path.read_text().strip()


class TensorBoard:
    def __init__(self, cell: dict, work: Path, project: str, start_step: int, folder: str | None):
        from torch.utils.tensorboard import SummaryWriter

        if not folder:
            raise ValueError("report.trackers names tensorboard but no TensorBoard folder was given (--tensorboard)")
        self.writer = SummaryWriter(folder, purge_step=start_step)  # a resumed run overwrites its undone steps

    def log(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MLflow:
    def __init__(self, cell: dict, work: Path, project: str, start_step: int, folder: str | None):
        import mlflow

        self.mlflow = mlflow
        experiment = mlflow.set_experiment(project)

        def new_run() -> str:
            run = mlflow.MlflowClient().create_run(experiment.experiment_id, run_name=run_name(cell),
                                                   tags=dict(model=cell["model_name"], objective=cell["objective"],
                                                             seed=str(cell["seed"])))
            mlflow.MlflowClient().log_batch(run.info.run_id, params=[
                mlflow.entities.Param(k, str(v)[:6000]) for k, v in flat(cell).items()])
            return run.info.run_id

        self.run = mlflow.start_run(run_id=kept_id(work, "mlflow", new_run))
        log.info("MLflow: run %s of experiment %s at %s", self.run.info.run_id, project, mlflow.get_tracking_uri())

    def log(self, values: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics(values, step=step, run_id=self.run.info.run_id)

    def close(self) -> None:
        self.mlflow.end_run()


class WandB:
    def __init__(self, cell: dict, work: Path, project: str, start_step: int, folder: str | None):
        import wandb

        run_id = kept_id(work, "wandb", lambda: secrets.token_hex(4))
        # resume="allow": a resumed attempt continues the run; W&B ignores steps it already has
        self.run = wandb.init(project=project, name=run_name(cell), group=cell["model_name"],
                              job_type=cell["objective"], config=cell, id=run_id, resume="allow", dir=work)
        log.info("W&B: run %s of project %s (mode %s)", run_id, project, self.run.settings.mode)

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


def open_trackers(names, cell: dict, work: Path, project: str, start_step: int, tensorboard_dir: str | None = None):
    """The named trackers, opened for this cell; an unknown name, or a tracker whose library is not
    installed, stops the job with the install command."""
    kinds = dict(tensorboard=TensorBoard, mlflow=MLflow, wandb=WandB)
    unknown = sorted(set(names) - set(kinds))
    if unknown:
        raise ValueError(f"unknown tracker(s) {unknown} in report.trackers; choose from {list(TRACKERS)}")
    opened = []
    for name in names:
        try:
            opened.append(kinds[name](cell, work, project, start_step, tensorboard_dir))
        except ImportError as err:
            raise SystemExit(f"report.trackers names {name}, whose library is not installed ({err.name}): "
                             f"pip install -e '.[trackers]'") from err
    return opened
