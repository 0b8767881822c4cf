"""Run a federated task on this machine: a coordinator and one hospital SuperNode per dataset folder."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from portal.api_errors import ServiceError


class Command(BaseCommand):
    help = (
        "Start a coordinator (SuperLink + ServerApp) and one hospital (SuperNode + ClientApp) per --data folder "
        "as separate processes on 127.0.0.1 over TLS with authenticated clients, run the task to its end, "
        "store every round, register and deploy the final model."
    )

    def add_arguments(self, parser):
        parser.add_argument("--data", nargs="+", required=True, type=Path, help="one MSD folder per hospital")
        parser.add_argument("--rounds", type=int, required=True)
        parser.add_argument("--local-epochs", type=int, default=1)
        parser.add_argument("--strategy", choices=["fedavg", "fedprox", "rtifed"], default="fedavg")
        parser.add_argument("--secure-aggregation", action="store_true")
        parser.add_argument("--min-clients", type=int, default=None, help="default: every hospital")
        parser.add_argument("--validation", type=Path, default=None, help="the coordinator's labelled set (RTIFed)")
        parser.add_argument("--model-name", default=None, help="registry name (default federated-<task id>)")
        parser.add_argument("--no-deploy", action="store_true", help="register the model without deploying it")
        parser.add_argument("--port", type=int, default=None)
        parser.add_argument("--round-timeout", type=float, default=None, help="seconds before a client is marked absent")
        parser.add_argument("--dp-clipping-norm", type=float, default=None,
                            help="local differential privacy (Flower LocalDpMod): L2 clipping norm of each update")
        parser.add_argument("--dp-epsilon", type=float, default=None)
        parser.add_argument("--dp-delta", type=float, default=None)
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **options):
        from federation import services
        from federation.models import FederatedTask

        try:
            task = services.task_create_local(
                data_dirs=options["data"], rounds=options["rounds"], local_epochs=options["local_epochs"],
                strategy=options["strategy"], min_clients=options["min_clients"], validation_dir=options["validation"],
                secure_aggregation=options["secure_aggregation"], dp_clipping_norm=options["dp_clipping_norm"],
                dp_epsilon=options["dp_epsilon"], dp_delta=options["dp_delta"],
            )
            services.task_start(task=task, user=None, enqueue=False)
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        except Exception as exc:  # ValidationError from full_clean
            raise CommandError(str(exc)) from exc

        def on_event(kind, data):
            if kind == "round" and not options["json"]:
                m = data["metrics"]
                self.stdout.write(f"round {data['round_number']}: val Dice {m.get('val_dice')} loss {m.get('loss')}")

        task = services.task_execute(task_id=task.pk, port=options["port"], round_timeout_s=options["round_timeout"], on_event=on_event)
        model = None
        if task.status == FederatedTask.Status.COMPLETED:
            model = services.model_register(task=task, name=options["model_name"], deploy=not options["no_deploy"])
        rounds = [
            {"round": r.round_number, "metrics": r.metrics, "timing": r.timing,
             "clients": {u.participant.client_id: {"status": u.status, "num_examples": u.num_examples, "metrics": u.metrics,
                                                   "reputation": u.reputation, "shapley": u.shapley} for u in r.updates.all()}}
            for r in task.round_set.prefetch_related("updates__participant").order_by("round_number")
        ]
        result = {"task_id": task.pk, "status": task.status, "error": task.error, "rounds": rounds,
                  "model_id": model.pk if model else None, "ledger": services.ledger_verify(task=task)}
        if options["json"]:
            self.stdout.write(json.dumps(result, ensure_ascii=False))
        else:
            self.stdout.write(f"task {task.pk}: {task.status}; model {result['model_id']}")
        if task.status != FederatedTask.Status.COMPLETED:
            raise CommandError(f"task {task.pk} ended {task.status}: {task.error}")
