"""Writes of the federation app: tasks, invitations, keys, rounds, the ledger, model registration and
the runner that drives a federation's processes. Plain-Python work lives in :mod:`federation.fl`.

One module per domain, as in Zulip's ``zerver/actions/``: :mod:`.paths` (paths, specs),
:mod:`.tasks_invitations`, :mod:`.lifecycle`, :mod:`.enrolment` (site nodes' own keys), :mod:`.ledger`, :mod:`.rounds`, :mod:`.runner` and
:mod:`.local_runs` (local runs from the command line). Callers import from ``federation.services``.
"""

from .enrolment import federation_ca, site_certificate_revoke, site_enrol, site_invite
from .ledger import contribution_credits, ledger_portal_held_clients, ledger_refusal_record, ledger_statement_append, ledger_verify
from .lifecycle import task_cancel, task_pause, task_start
from .local_runs import task_create_local
from .paths import task_dir, task_spec
from .recovery import FederationSweepResult, federated_tasks_sweep, orphans_kill, task_claim, task_heartbeat
from .rounds import model_deploy, model_register, round_ingest, round_restore
from .runner import MAX_COORDINATOR_RESTARTS, task_execute, task_work_dir_cleanup
from .tasks_invitations import (
    SECAGG_MIN_CLIENTS,
    dataset_choices,
    dataset_root,
    invitation_respond,
    participant_data_dirs,
    participant_invite,
    participant_revoke,
    task_create,
    task_keys_ensure,
)

__all__ = [
    "FederationSweepResult",
    "federation_ca",
    "ledger_portal_held_clients",
    "ledger_refusal_record",
    "ledger_statement_append",
    "site_certificate_revoke",
    "site_enrol",
    "site_invite",
    "federated_tasks_sweep",
    "orphans_kill",
    "task_claim",
    "task_heartbeat",
    "MAX_COORDINATOR_RESTARTS",
    "SECAGG_MIN_CLIENTS",
    "contribution_credits",
    "dataset_choices",
    "dataset_root",
    "invitation_respond",
    "ledger_verify",
    "model_deploy",
    "model_register",
    "participant_data_dirs",
    "participant_invite",
    "participant_revoke",
    "round_ingest",
    "round_restore",
    "task_cancel",
    "task_create",
    "task_create_local",
    "task_dir",
    "task_execute",
    "task_keys_ensure",
    "task_pause",
    "task_spec",
    "task_start",
    "task_work_dir_cleanup",
]
