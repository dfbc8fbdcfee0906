"""What ``sasrec-tf tune`` writes and prints: one line per trial, the trials table
(``trials.csv``), the best configuration as a pipeline file (``best.json``) and a picture of the
search (``tune.png``: the objective per trial, and Optuna's parameter importances).

Pictures follow :mod:`sasrec_tf.plots`: matplotlib's Agg renderer without pyplot, written
atomically. TensorFlow-free.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from sasrec_tf.files import write_with

__all__ = ["BEST_FILE", "PLOT_FILE", "TRIALS_FILE", "best_pipeline_json", "plot_study", "trial_line", "write_trials"]

logger = logging.getLogger(__name__)

TRIALS_FILE, BEST_FILE, PLOT_FILE = "trials.csv", "best.json", "tune.png"
_DPI = 110


def trial_line(study, trial, trials: int, metric: str) -> str:
    """``trial 3/10 complete: ndcg@10 0.1234 (best 0.1300, trial 1), 20 epochs, 12.3 s: lr=...``."""
    finished = sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.get_trials(deepcopy=False))
    values = " ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
    state = trial.state.name.lower()
    if state == "complete":
        best = study.best_trial
        what = (f"{metric} {trial.value:.4f} (best {best.value:.4f}, trial {best.number}), "
                f"{trial.user_attrs.get('epochs', '?')} epochs, {trial.user_attrs.get('seconds', '?')} s")
    elif state == "pruned":
        step = trial.last_step
        what = (f"pruned after epoch {step} ({metric} {trial.intermediate_values[step]:.4f})" if step is not None
                else "pruned")
    else:
        what = trial.user_attrs.get("error", "failed")
    retry = f" (again, for interrupted trial {trial.user_attrs['retry_of']})" if "retry_of" in trial.user_attrs else ""
    return f"trial {trial.number} [{finished}/{trials}] {state}{retry}: {what}: {values}"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_trials(study, out_dir: Path) -> Path:
    """Every trial of the study as a row of ``trials.csv`` (Optuna's ``trials_dataframe``)."""
    frame = study.trials_dataframe()
    return write_with(Path(out_dir) / TRIALS_FILE, lambda handle: frame.to_csv(handle, index=False), binary=False)


def best_pipeline_json(pipeline, trial, metric: str, command: str | None) -> dict[str, Any]:
    """``best.json``: the base pipeline with the best trial's values, loadable by
    ``sasrec-tf train --config``; its description says how it was found."""
    how = f"`{command}`" if command else "sasrec-tf tune"
    description = (f"Found by {how}: trial {trial.number}, validation {metric} {trial.value:.4f} (full ranking; "
                   f"no test metric was computed during the search). Searched: "
                   + ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items()))
    return {"description": description, "model": dict(pipeline.model), "data": dict(pipeline.data),
            "train": dict(pipeline.train)}


def _importances(study) -> dict[str, float]:
    """Optuna's parameter importances (PED-ANOVA: no scikit-learn), or {} with too few trials."""
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(complete) < 3 or not study.best_trial.params:
        return {}
    try:
        return optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    except (ValueError, RuntimeError, ZeroDivisionError) as err:
        logger.warning("no parameter importances: %s", err)
        return {}


def plot_study(study, path: str | Path, metric: str) -> Path:
    """``tune.png``: the objective of every finished trial (pruned ones at their last validation)
    with the best so far, and the parameters' importances where there are enough trials."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    left, right = fig.subplots(1, 2, squeeze=True)
    best_so_far, best = [], -math.inf
    for trial in study.get_trials(deepcopy=False):
        if trial.state.name == "COMPLETE":
            left.scatter(trial.number, trial.value, color="tab:blue", zorder=3)
            best = max(best, trial.value)
        elif trial.state.name == "PRUNED" and trial.last_step is not None:
            left.scatter(trial.number, trial.intermediate_values[trial.last_step], color="tab:grey", marker="x",
                         zorder=3)
        if best > -math.inf:
            best_so_far.append((trial.number, best))
    if best_so_far:
        xs, ys = zip(*best_so_far)
        left.step(xs, ys, where="post", color="tab:orange", label="best so far")
    left.scatter([], [], color="tab:blue", label="complete")
    left.scatter([], [], color="tab:grey", marker="x", label="pruned (last validation)")
    from matplotlib.ticker import MaxNLocator

    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_xlabel("trial")
    left.set_ylabel(f"validation {metric} (full ranking)")
    left.set_title("objective per trial")
    left.grid(alpha=0.3)
    left.legend(fontsize="small")
    importances = _importances(study)
    if importances:
        names = list(importances)[::-1]
        right.barh(names, [importances[n] for n in names], color="tab:green")
        right.set_xlabel("importance (Optuna, PED-ANOVA)")
    else:
        right.text(0.5, 0.5, "importances need 3 or more complete trials", ha="center", va="center",
                   transform=right.transAxes)
        right.set_axis_off()
    right.set_title("parameter importances")
    fig.tight_layout()
    path = Path(path)
    write_with(path, lambda handle: fig.savefig(handle, format="png", dpi=_DPI))
    return path
