"""Writes of the modeling app, one module a room (this package re-exports them, so that
`from apps.modeling import services` keeps working):

- `runs`: a training run requested, scheduled, mended, claimed, executed, cancelled;
- `training`: what a claimed run does (snapshot, fit, evaluation, the version stored);
- `predictions`: every case's predictions of a version, kept beside it;
- `deployments`: deploy, roll back, apply production's scores; deploy a new version when due;
- `monitoring`: the production model checked on recent cases;
- `reproduction`: a run reproduced from its snapshot, parameters and seed;
- `configuration`: the objective and the training configuration changed;
- `comparison`: two versions compared; `common`: task names, progress, where models live.

The reads the runs need (`training_data`, `run_columns`) are in apps/modeling/selectors.py.
"""

# ruff: noqa: F401

from apps.modeling.selectors import TrainingData, run_columns, training_data
from apps.modeling.services.common import (
    APPLY_TASK,
    LABEL_ISSUES_TASK,
    PREDICT_TASK,
    RUN_TASK,
    _deployment_current,
    _fail,
    _progress,
    _run_status,
    model_dir,
)
from apps.modeling.services.comparison import (
    _feature_difference,
    _moved,
    _names,
    _out_of_sample_cases,
    model_versions_compare,
    threshold_for,
)
from apps.modeling.services.configuration import (
    _hyperparameters_check,
    objective_change,
    training_config_change,
)
from apps.modeling.services.deployments import (
    deployment_apply,
    model_version_deploy,
    model_version_rollback,
    version_predictions_store,
)
from apps.modeling.services.monitoring import (
    DRIFT_SAMPLE,
    LiveCases,
    _alert,
    _drift,
    _labeled_after,
    _live_cases,
    _periods,
    _rows_of,
    monitoring_check,
    monitoring_check_all,
    month,
)
from apps.modeling.services.predictions import (
    _predictions_path,
    version_decisions,
    version_model,
    version_predictions_load,
    version_predictions_make,
)
from apps.modeling.services.reproduction import (
    training_run_reproduce,
    training_run_reproduce_request,
    training_run_reproduce_safely,
)
from apps.modeling.services.runs import (
    CANCEL_POLL_SECONDS,
    HEARTBEAT_SECONDS,
    MAX_ATTEMPTS,
    RESEND_SENT_AFTER,
    RESEND_UNSENT_AFTER,
    _claim,
    _derived_params,
    _enqueue_run,
    _Heartbeat,
    retrain_due_projects,
    retrain_schedule,
    stale_run_after,
    training_run_cancel,
    training_run_execute,
    training_run_request,
    training_runs_mend,
)
from apps.modeling.services.training import (
    _objective_for,
    _same_as_last_model,
    _snapshot_and_features,
    _snapshot_kept,
    _train,
    _train_with,
)
