"""The Flower ServerApp (coordinator) and ClientApp (hospital) of a federated segmentation task.

Launched by Flower's deployment engine (``flower-superlink``, ``flower-supernode``, ``flwr run``; see
:mod:`federation.fl.launcher`). Nothing here touches Django: the coordinator writes each completed
round to an *outbox* folder (``round-NNNN.npz`` global weights + ``round-NNNN.json`` metrics, client
statements and signatures), which the portal ingests; it reads earlier rounds back from the same
folder when it is restarted.

Run config (``[tool.flwr.app.config]``): ``task-id``, ``num-rounds``, ``start-round``, ``local-epochs``,
``strategy`` (``fedavg``/``fedprox``/``rtifed``/``flower-fedavg``), ``mu``, ``min-clients``,
``round-timeout-s``, ``wait-clients-s``, ``rejoin-grace-s`` (seconds the round after a client was lost waits
for its node to come back, once; see :mod:`federation.fl.membership`), ``outbox``, ``initial-weights`` (an ``.npz`` or empty),
``validation-dir`` (the coordinator's own labelled set, needed by RTIFed), ``spec``
(:func:`encode_json` of :class:`federation.fl.local.ModelSpec` fields), ``seed``, ``reputation-epsilon``,
``indirect-reputation`` (:func:`encode_json` of client → reputation), ``dp-clipping-norm``/``dp-epsilon``/
``dp-delta`` (local differential privacy with Flower's ``LocalDpMod``; clipping norm 0 = off), ``min-reputation``, ``select-k`` (0 = every qualifying client),
``secure-aggregation`` (``true``: each round runs Flower's SecAgg+ protocol, see :func:`secure_exchange`;
FedAvg/FedProx only), ``secagg-clipping-range``, ``secagg-reconstruction-threshold``, ``server-optimizer``
(``none``/``fedavgm``/``fedadam``/``fedyogi``, applied to every strategy's aggregate, see
:mod:`federation.fl.server_opt`), ``server-lr``, ``server-momentum``, ``server-beta1``, ``server-beta2``, ``server-tau``,
``in-process-training`` (``true``: every ClientApp trains in its own fresh process, as a default Flower
app does, ignoring the site's warm trainer; the baseline of ``benchmarks/federated.py``).

Node config of each SuperNode: ``client-id``, ``data-dir`` (its own MSD folders, joined with
``os.pathsep``: the only data it reads), ``signing-key`` (its Ed25519 PEM), ``threads``, and optionally
``trainer-socket``/``trainer-authkey`` (its warm trainer, :mod:`federation.fl.warm_trainer`: the ClientApp
then imports no PyTorch and hands training, evaluation and label statistics to it).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
import time
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid, ServerApp

from . import rtifed, warm_trainer
from .aggregation import fedavg
from .server_opt import ServerOptimizer, ServerOptimizerState, load_state, save_state, server_step
from .ledger import KIND_CLIENT_UPDATE, client_statement, load_private_key, sign_bytes
from .membership import activation_stamps, ask_identities, wait_for_nodes, wait_for_rejoin
from .polling import PollingGrid



def secure_aggregation_mod(msg: Message, context: Context, call_next) -> Message:
    """Run Flower's SecAgg+ client protocol (``secaggplus_mod``) on the train messages of a secure round.

    A train message that carries the SecAgg+ configuration (record ``"secaggplus"``) goes through the
    protocol's four stages (setup, share keys, collect masked vectors, unmask); in the third stage the
    wrapped :func:`train` runs and its update leaves the hospital only as a masked, quantised vector
    (Bell et al., "Secure Single-Server Aggregation with (Poly)Logarithmic Overhead", CCS 2020).
    Every other message (plain rounds, queries, evaluation) passes through untouched.
    """
    from flwr.client.mod import secaggplus_mod
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

    if msg.metadata.message_type == "train" and RECORD_KEY_CONFIGS in msg.content.config_records:
        return secaggplus_mod(msg, context, call_next)
    return call_next(msg, context)


serverapp = ServerApp()
clientapp = ClientApp(mods=[secure_aggregation_mod])


# --------------------------------------------------------------------------------------------------
# Client (hospital)
# --------------------------------------------------------------------------------------------------


def _node_settings(context: Context) -> dict:
    cfg = context.node_config
    socket = str(cfg.get("trainer-socket", "") or "")
    return {
        "client_id": str(cfg["client-id"]),
        "data_dirs": [Path(p) for p in str(cfg["data-dir"]).split(os.pathsep) if p],
        "signing_key": Path(str(cfg["signing-key"])),
        "threads": int(cfg.get("threads", 1) or 1),
        "trainer": (Path(socket), Path(str(cfg.get("trainer-authkey", "")))) if socket else None,
    }


def _site_work(node: dict, context: Context, request: dict) -> tuple[dict, str]:
    """Answer a site request (:mod:`federation.fl.warm_trainer`'s ``train``/``evaluate``/``label-statistics``)
    on the node's warm trainer, or in this process when the run asks for in-process training
    (``in-process-training``, Flower's default behaviour) or the trainer cannot be reached.

    Returns the answer and where it ran (``"warm"`` or ``"in-process"``).
    """
    if node["trainer"] is not None and not _flag(context.run_config.get("in-process-training", False)):
        try:
            return warm_trainer.trainer_request(*node["trainer"], request), "warm"
        except warm_trainer.TrainerUnavailable as exc:
            _log(f"client {node['client_id']}: warm trainer unreachable ({exc}); {request['op']} in the ClientApp's process")
    if request["op"] == "label-statistics":
        return {"stats": warm_trainer.site_label_statistics(node["data_dirs"])}, "in-process"
    import torch

    torch.set_num_threads(max(1, node["threads"]))
    if request["op"] == "train":
        return warm_trainer.site_train(node["data_dirs"], request["spec"], request["arrays"], epochs=request["epochs"],
                                       mu=request["mu"], seed=request["seed"]), "in-process"
    return warm_trainer.site_evaluate(node["data_dirs"], request["spec"], request["arrays"]), "in-process"


def encode_json(value) -> str:
    """Encode a JSON value for a Flower run-config string (URL-safe base64: no spaces or quotes)."""
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode()


def decode_json(text: str, default=None):
    """Decode :func:`encode_json` output (``default`` for an empty string)."""
    if not text:
        return default
    return json.loads(base64.urlsafe_b64decode(str(text).encode()).decode())


def _spec_from(config) -> "object":
    from .local import ModelSpec

    raw = decode_json(str(config["spec"]))
    raw["patch_size"] = tuple(raw["patch_size"])
    return ModelSpec(**raw)


def _local_data(data_dirs: list[Path], patch_size):
    """This hospital's cases from all its contributed MSD folders, preprocessed (cached per process)."""
    return warm_trainer.site_data(data_dirs, patch_size)


@clientapp.query()
def query(msg: Message, context: Context) -> Message:
    """Answer who this hospital is and its label statistics (counts only, never images)."""
    node = _node_settings(context)
    stats = _site_work(node, context, {"op": "label-statistics"})[0]["stats"]
    return Message(
        RecordDict({"config": ConfigRecord({"client-id": node["client_id"], "label-stats": json.dumps(stats)})}),
        reply_to=msg,
    )


def privatise_update(received, context: Context, trained, *, clipping_norm: float, epsilon: float, delta: float) -> list[np.ndarray]:
    """Clip a client's update and add Gaussian noise with Flower's ``LocalDpMod``.

    The update ``Δ = trained − received`` is scaled to L2 norm
    ≤ ``clipping_norm`` and noise with σ = ``clipping_norm``·√(2 ln(1.25/δ))/ε is added to every weight
    (the Gaussian mechanism, Dwork & Roth, "The Algorithmic Foundations of Differential Privacy", 2014,
    Thm. A.1; the L2 sensitivity of a clipped update is the clipping norm).

    Parameters
    ----------
    received : sequence of ndarray
        The global weights the client received (plain or SecAgg+ round alike).
    context : flwr Context
        The ClientApp's context.
    trained : sequence of ndarray
        The weights the client trained, in the order of the received ones.

    Returns
    -------
    list of ndarray
        The weights the client sends.

    Raises
    ------
    ValueError
        A non-positive clipping norm or a negative ε/δ (raised by Flower), or the mod failing.
    """
    from flwr.clientapp.mod import LocalDpMod

    mod = LocalDpMod(clipping_norm, clipping_norm, epsilon, delta)
    # The mod wraps a train message: hand it one carrying the received weights and answer it with the trained.
    msg = Message(RecordDict({"arrays": ArrayRecord(list(received))}), dst_node_id=context.node_id, message_type="train")

    def call_next(incoming, ctxt):
        keys = list(incoming.content["arrays"].keys())
        return Message(RecordDict({"arrays": ArrayRecord(dict(zip(keys, map(_array, trained))))}), reply_to=incoming)

    out = mod(msg, context, call_next)
    if out.has_error():
        raise ValueError(f"LocalDpMod failed: {out.error.reason}")
    return out.content["arrays"].to_numpy_ndarrays()


def _log(text: str) -> None:
    """Write a line to the Flower process's log (counts and ids only: never a file name or patient detail)."""
    from logging import INFO

    from flwr.common.logger import log

    log(INFO, "%s", text)


def _array(value):
    from flwr.app import Array

    return Array(np.asarray(value))


@clientapp.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received global model on this hospital's own cases, apply local DP when the task asks
    for it, and sign the update that is sent.

    A plain round sends the trained weights (``arrays``) with the metrics and the signed SHA-256 in the
    reply. A secure round (SecAgg+, the message in Flower's legacy ``fitins`` layout) sends the update
    Δ = trained − received instead, since SecAgg+ quantises values clipped to a fixed range and
    differences are small; the signed SHA-256 is then that of Δ, before masking, and the coordinator,
    which only ever sees the sum, cannot check it — the signature commits the hospital to its update.
    """
    secure = "fitins.parameters" in msg.content.array_records
    if secure:
        from flwr.common import parameters_to_ndarrays
        from flwr.compat.common.recorddict_compat import recorddict_to_fitins

        fitins = recorddict_to_fitins(msg.content, keep_input=True)
        received, config = parameters_to_ndarrays(fitins.parameters), dict(fitins.config)
    else:
        received, config = msg.content["arrays"].to_numpy_ndarrays(), msg.content["config"]
    sent, signed = _train_and_sign(received, config, context, delta=secure)
    if secure:
        from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
        from flwr.compat.common.recorddict_compat import fitres_to_recorddict

        metrics = {**signed["metrics"], "client-id": signed["client_id"], "sha256": signed["sha256"],
                   "signature": signed["signature"]}
        fitres = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(sent), signed["num_examples"], metrics)
        return Message(fitres_to_recorddict(fitres, keep_input=False), reply_to=msg)
    return Message(
        RecordDict(
            {
                "arrays": ArrayRecord(sent),
                "metrics": MetricRecord({**signed["metrics"], "num-examples": signed["num_examples"]}),
                "config": ConfigRecord({"client-id": signed["client_id"], "sha256": signed["sha256"],
                                        "signature": signed["signature"], "trainer": signed["trainer"]}),
            }
        ),
        reply_to=msg,
    )


def _train_and_sign(received: list[np.ndarray], config, context: Context, *, delta: bool) -> tuple[list[np.ndarray], dict]:
    """Train on this node's data from ``received``; return what is sent (weights, or Δ when ``delta``)
    and the signed statement's fields."""
    from .local import arrays_sha256

    node = _node_settings(context)
    spec = decode_json(str(config["spec"] if "spec" in config else context.run_config["spec"]))
    round_number = int(config.get("server-round", config.get("round", 0)))
    epochs = int(config.get("local-epochs", context.run_config.get("local-epochs", 1)))
    mu = float(config.get("mu", context.run_config.get("mu", 0.0)))
    seed = int(context.run_config.get("seed", 0)) * 1000 + round_number * 17 + sum(map(ord, node["client_id"]))
    _log(f"client {node['client_id']}: training round {round_number} ({epochs} epoch(s))")
    result, where = _site_work(node, context, {"op": "train", "arrays": [np.asarray(a) for a in received], "spec": spec,
                                               "epochs": epochs, "mu": mu, "seed": seed})
    _log(f"client {node['client_id']}: trained round {round_number} ({result['num_examples']} cases, "
         f"{epochs} epoch(s), {where})")
    sent = result["arrays"]
    clip = float(config.get("dp-clipping-norm", 0.0) or 0.0)
    if clip > 0:
        sent = privatise_update(received, context, sent, clipping_norm=clip, epsilon=float(config["dp-epsilon"]),
                                delta=float(config["dp-delta"]))
    if delta:
        sent = [(np.asarray(s) - np.asarray(r)).astype(np.asarray(r).dtype) for s, r in zip(sent, received)]
    sha = arrays_sha256(sent)
    metrics = {
        "loss": round(result["loss"], 6),
        "dice-local": round(result["dice_before"], 6),
        "train-s": round(result["duration_s"], 4),
        "epochs": epochs,
    }
    task_id = str(config.get("task-id", context.run_config.get("task-id", "")))
    statement = client_statement(
        task_id=task_id, round_number=round_number, kind=KIND_CLIENT_UPDATE, client=node["client_id"],
        update_sha256=sha, num_examples=result["num_examples"], metrics=metrics,
    )
    signature = sign_bytes(load_private_key(node["signing_key"].read_bytes()), statement)
    return sent, {"client_id": node["client_id"], "sha256": sha, "signature": signature, "metrics": metrics,
                  "num_examples": result["num_examples"], "trainer": where}


@clientapp.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Return the Dice of the received model on this hospital's own cases."""
    node = _node_settings(context)
    config = msg.content["config"] if "config" in msg.content else {}
    spec = decode_json(str(config["spec"] if "spec" in config else context.run_config["spec"]))
    scores, _ = _site_work(node, context, {"op": "evaluate", "arrays": msg.content["arrays"].to_numpy_ndarrays(), "spec": spec})
    return Message(RecordDict({"metrics": MetricRecord({"dice": scores["dice"], "num-examples": scores["num_examples"]})}),
                   reply_to=msg)


# --------------------------------------------------------------------------------------------------
# Coordinator
# --------------------------------------------------------------------------------------------------


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def _save_arrays(path: Path, arrays) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, *arrays)
    os.replace(tmp, path)


def load_arrays(path: Path) -> list[np.ndarray]:
    """Read weights written by the coordinator (``arr_0`` … ``arr_N`` of an ``.npz``)."""
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def _status(outbox: Path, **fields) -> None:
    _write_json(outbox / "status.json", {"time": time.time(), **fields})


def _previous_rounds(outbox: Path, before: int) -> list[dict]:
    rounds = []
    for r in range(1, before):
        path = outbox / f"round-{r:04d}.json"
        if path.exists():
            rounds.append(json.loads(path.read_text(encoding="utf-8")))
    return rounds


def _richness(stats: dict) -> float:
    return rtifed.information_richness([{int(k): v for k, v in stats.get("voxels", {}).items()}])


@serverapp.main()
def main(grid: Grid, context: Context) -> None:
    """Run rounds ``start-round`` … ``num-rounds`` and write each to the outbox."""
    cfg = context.run_config
    outbox = Path(str(cfg["outbox"]))
    outbox.mkdir(parents=True, exist_ok=True)
    strategy = str(cfg["strategy"])
    if strategy == "flower-fedavg":
        return _flower_fedavg(grid, context, outbox)
    try:
        _run_rounds(grid, context, outbox, strategy)
    except Exception as exc:  # the portal must learn why the coordinator stopped
        _write_json(outbox / "failed.json", {"error": f"{type(exc).__name__}: {exc}"})
        raise


def _run_rounds(grid: Grid, context: Context, outbox: Path, strategy: str) -> None:
    from .data import load_cases
    from .local import arrays_sha256, evaluate_dice, initial_arrays

    cfg = context.run_config
    grid = PollingGrid(grid)  # replies are checked every 0.1 s, not Flower's 3 s
    secure = _flag(cfg.get("secure-aggregation", False))
    if secure and strategy not in ("fedavg", "fedprox"):
        raise ValueError("secure aggregation runs with FedAvg or FedProx only: RTIFed's Shapley reputation needs each "
                         "client's update, which SecAgg+ hides")
    spec = _spec_from(cfg)
    num_rounds, start = int(cfg["num-rounds"]), int(cfg.get("start-round", 1))
    min_clients = int(cfg["min-clients"])
    timeout_s = float(cfg.get("round-timeout-s", 600))
    mu = float(cfg.get("mu", 0.0)) if strategy in ("fedprox",) else 0.0
    initial = str(cfg.get("initial-weights", "") or "")
    arrays = load_arrays(Path(initial)) if initial else initial_arrays(spec, seed=int(cfg.get("seed", 0)))
    validation_dir = str(cfg.get("validation-dir", "") or "")
    validation = load_cases(Path(validation_dir), patch_size=spec.patch_size) if validation_dir else None
    if strategy == "rtifed" and validation is None:
        raise ValueError("RTIFed needs the coordinator's validation set (validation-dir) for Shapley contributions")
    history = _previous_rounds(outbox, start)
    server_optimizer = ServerOptimizer.from_run_config(cfg)
    # A restarted coordinator resumes the server optimiser's moments from the last completed round.
    saved_state = outbox / f"server-optimizer-{start - 1:04d}.npz"
    server_state = load_state(saved_state) if start > 1 and saved_state.exists() else ServerOptimizerState()

    _status(outbox, state="waiting_for_clients", round=start)
    nodes = wait_for_nodes(grid, min_clients, float(cfg.get("wait-clients-s", 120)))
    if len(nodes) < min_clients:
        raise RuntimeError(f"only {len(nodes)} client(s) connected, the task needs {min_clients}")
    identities = ask_identities(grid, nodes, timeout_s)
    rejoin_grace_s = float(cfg.get("rejoin-grace-s", 60))
    lost: dict[int, str] = {}  # node id → its activation stamp, for the selected nodes that missed the last round

    for round_number in range(start, num_rounds + 1):
        round_started = time.perf_counter()
        if lost and rejoin_grace_s > 0:  # a hospital's node lost last round is likely restarting: wait for it once
            _status(outbox, state="waiting_for_clients", round=round_number)
            wait_for_rejoin(grid, lost, rejoin_grace_s)
        # Clients may have joined or left since the last round.
        stamps = activation_stamps(grid)
        nodes = sorted(stamps)
        unknown = [n for n in nodes if n not in identities]
        if unknown:
            identities.update(ask_identities(grid, unknown, timeout_s))
        nodes = [n for n in nodes if n in identities]
        reputation = _reputation(history, cfg, [identities[n]["client_id"] for n in nodes])
        selected, epochs_by_client, otds = _select(strategy, cfg, nodes, identities, reputation, history)
        _status(outbox, state="training", round=round_number, selected=[identities[n]["client_id"] for n in selected])
        sent_at = time.perf_counter()
        global_sha = arrays_sha256(arrays)
        train_config = {
            "server-round": round_number, "mu": mu, "task-id": str(cfg["task-id"]), "spec": str(cfg["spec"]),
            "global-sha256": global_sha,
            "dp-clipping-norm": float(cfg.get("dp-clipping-norm", 0.0) or 0.0),
            "dp-epsilon": float(cfg.get("dp-epsilon", 0.0) or 0.0),
            "dp-delta": float(cfg.get("dp-delta", 0.0) or 0.0),
        }
        updates, clients = {}, {}
        unavailable: set[int] = set()
        secure_info: dict = {}
        if secure:
            max_weight = max(int(identities[n]["label_stats"].get("cases", 1) or 1) for n in selected)
            mean_delta, answers, secure_info = secure_exchange(
                grid, context, selected, arrays, {**train_config, "local-epochs": int(cfg["local-epochs"])},
                round_number=round_number, timeout_s=timeout_s, max_weight=float(max_weight),
                clipping_range=float(cfg.get("secagg-clipping-range", 8.0)),
                reconstruction_threshold=float(cfg.get("secagg-reconstruction-threshold", 0.5)),
            )
            for node, (num_examples, metrics) in answers.items():
                cid = identities.get(node, {}).get("client_id")
                if cid is None or str(metrics.pop("client-id", "")) != cid:
                    continue
                clients[cid] = {
                    "status": "answered", "node_id": str(node), "num_examples": int(num_examples),
                    "sha256": str(metrics.pop("sha256")), "signature": str(metrics.pop("signature")),
                    "metrics": metrics, "masked": True,
                }
        else:
            messages = [
                Message(
                    RecordDict({"arrays": ArrayRecord(arrays),
                                "config": ConfigRecord({**train_config, "local-epochs": int(epochs_by_client[identities[n]["client_id"]])})}),
                    message_type="train",
                    dst_node_id=n,
                )
                for n in selected
            ]
            replies = list(grid.send_and_receive(messages, timeout=timeout_s))
            for reply in replies:
                node = reply.metadata.src_node_id
                cid = identities.get(node, {}).get("client_id")
                if cid is None:
                    continue
                if reply.has_error():
                    clients[cid] = {"status": "failed", "error": str(reply.error.reason)[:200]}
                    if reply.error.code == ErrorCode.NODE_UNAVAILABLE:
                        unavailable.add(node)
                    continue
                metrics = dict(reply.content["metrics"])
                c = reply.content["config"]
                update = reply.content["arrays"].to_numpy_ndarrays()
                sha = arrays_sha256(update)
                if sha != str(c["sha256"]):
                    clients[cid] = {"status": "failed", "error": "update hash does not match the signed hash"}
                    continue
                updates[cid] = (update, int(metrics.pop("num-examples")))
                clients[cid] = {
                    "status": "answered", "node_id": str(node), "num_examples": updates[cid][1],
                    "metrics": metrics, "sha256": sha, "signature": str(c["signature"]),
                }
        received_at = time.perf_counter()
        for n in selected:
            cid = identities[n]["client_id"]
            clients.setdefault(cid, {"status": "absent"})
        lost = {n: stamps.get(n, "") for n in selected
                if clients[identities[n]["client_id"]]["status"] == "absent" or n in unavailable}
        for n in nodes:
            cid = identities[n]["client_id"]
            clients.setdefault(cid, {"status": "not_selected"})
        # A halted SecAgg+ round returns no answers, so it is caught here too.
        answered = [c for c, row in clients.items() if row["status"] == "answered"]
        if len(answered) < min_clients:
            raise RuntimeError(
                f"round {round_number}: {len(answered)} client(s) answered, the task needs {min_clients}"
            )

        aggregation_started = time.perf_counter()
        sent_arrays = arrays
        shapley, shapley_info = {}, {}
        base_dice = evaluate_dice(arrays, validation, spec)["dice"] if validation is not None and strategy == "rtifed" else math.nan
        if secure:
            # SecAgg+ returned only Σ n_i·Δ_i / Σ n_i: the FedAvg of the updates, added to the global model.
            contributions = {}
            arrays = [(np.asarray(a, dtype=np.float64) + d).astype(np.asarray(a).dtype) for a, d in zip(arrays, mean_delta)]
        elif strategy == "rtifed":
            cache: dict = {}

            def utility(coalition: frozenset) -> float:
                key = tuple(sorted(coalition))
                if key not in cache:
                    agg = fedavg([updates[c][0] for c in key], [updates[c][1] for c in key])
                    cache[key] = evaluate_dice(agg, validation, spec)["dice"] - base_dice
                return cache[key]

            shapley, shapley_info = rtifed.shapley_values(sorted(updates), utility, seed=round_number)
            contributions = rtifed.normalise_contributions(shapley, {c: updates[c][1] for c in shapley})
            history_for_rep = history + [{"contributions": contributions, "clients": clients}]
            reputation = _reputation(history_for_rep, cfg, list(updates))
            weights = [updates[c][1] * max(reputation.get(c, 0.0), 0.0) for c in sorted(updates)]
            if sum(weights) <= 0:
                weights = [updates[c][1] for c in sorted(updates)]
            arrays = fedavg([updates[c][0] for c in sorted(updates)], weights)
        else:
            contributions = {}
            arrays = fedavg([updates[c][0] for c in sorted(updates)], [updates[c][1] for c in sorted(updates)])
        if not server_optimizer.is_plain_fedavg:  # FedOpt: x_{t+1} from x_t and the aggregate
            arrays = server_step(sent_arrays, arrays, server_optimizer, server_state)
            save_state(outbox / f"server-optimizer-{round_number:04d}.npz", server_state)
        aggregation_s = time.perf_counter() - aggregation_started + secure_info.get("unmask_s", 0.0)
        for cid in clients:
            if cid in reputation:
                clients[cid]["reputation"] = round(float(reputation[cid]), 6)
            if cid in shapley:
                clients[cid]["shapley"] = round(float(shapley[cid]), 6)
            if cid in epochs_by_client:
                clients[cid]["epochs_assigned"] = int(epochs_by_client[cid])
        val = evaluate_dice(arrays, validation, spec) if validation is not None else None
        train_times = [clients[c]["metrics"]["train-s"] for c in answered]
        round_s = time.perf_counter() - round_started
        record = {
            "task_id": str(cfg["task-id"]),
            "round_number": round_number,
            "strategy": strategy,
            "global_sha256": arrays_sha256(arrays),
            "num_examples": sum(clients[c]["num_examples"] for c in answered),
            "clients": clients,
            "secure_aggregation": secure_info or None,
            "contributions": contributions,
            "shapley": shapley_info,
            "otds": otds,
            "server_optimizer": dataclasses.asdict(server_optimizer),
            "dp": {k: float(cfg.get(k, 0.0) or 0.0) for k in ("dp-clipping-norm", "dp-epsilon", "dp-delta")},
            "metrics": {
                "val_dice": None if val is None else round(val["dice"], 6),
                "val_dice_per_label": None if val is None else {str(k): v for k, v in val["dice_per_label"].items()},
                "loss": round(float(np.mean([clients[c]["metrics"]["loss"] for c in answered])), 6),
                "dice_local": round(
                    float(np.average([clients[c]["metrics"]["dice-local"] for c in answered],
                                     weights=[clients[c]["num_examples"] for c in answered])), 6),
            },
            "timing": {
                "round_s": round(round_s, 4),
                "exchange_s": round(received_at - sent_at, 4),
                "slowest_train_s": round(max(train_times), 4),
                "aggregation_s": round(aggregation_s, 4),
                "overhead_s": round(round_s - max(train_times), 4),
            },
        }
        _save_arrays(outbox / f"round-{round_number:04d}.npz", arrays)
        _write_json(outbox / f"round-{round_number:04d}.json", record)
        history.append(record)
    _write_json(outbox / "done.json", {"rounds": num_rounds, "global_sha256": arrays_sha256(arrays)})
    _status(outbox, state="completed", round=num_rounds)


def _flag(value) -> bool:
    """A run-config boolean (TOML ``true``/``false``, or a string from an override)."""
    return value is True or str(value).strip().lower() in ("true", "1", "yes")


def secure_exchange(
    grid: Grid,
    context: Context,
    nodes: list[int],
    arrays: list[np.ndarray],
    train_config: dict,
    *,
    round_number: int,
    timeout_s: float,
    max_weight: float,
    clipping_range: float = 8.0,
    reconstruction_threshold: float = 0.5,
) -> tuple[list[np.ndarray] | None, dict[int, tuple[int, dict]], dict]:
    """Run one training round of Flower's SecAgg+ protocol (``SecAggPlusWorkflow``) with ``nodes``.

    Each client trains from ``arrays`` and sends its update Δ_i masked with pairwise and private masks
    (Bell et al., CCS 2020); the masks cancel in the sum, so the coordinator learns Σ n_i·Δ_i and Σ n_i
    only — never a single update. Clients that drop out after the key exchange are unmasked with their
    neighbours' Shamir shares, as long as ``reconstruction_threshold`` of them answer.

    Parameters
    ----------
    grid, context
        The ServerApp's grid and context (its run config is kept; a legacy context wraps it).
    nodes : list of int
        Node ids of the round's clients (at least 2; the portal asks for 3).
    arrays : list of ndarray
        The global weights sent to every client, in state-dict order.
    train_config : dict
        The FitIns config every client receives (round, epochs, task id, spec, DP parameters).
    round_number : int
    timeout_s : float
        Seconds each of the four stages waits for replies.
    max_weight : float
        The largest number of examples a client may weigh (the largest client's case count), so each
        client's weight ratio n_i / max_weight ≤ 1 keeps the quantisation precise.
    clipping_range : float
        Update entries are clipped to ±``clipping_range`` (after weighting) before quantisation to
        2²² levels; a step of 2·range/2²² (3.8e-6 for 8.0).
    reconstruction_threshold : float
        Fraction of a client's shares needed to reconstruct its secrets (Flower's float form; ≥ 2 shares).

    Returns
    -------
    mean_delta : list of ndarray or None
        Σ n_i·Δ_i / Σ n_i (float64, the shapes of ``arrays``), or None when the protocol halted (too
        few clients left to unmask).
    answers : dict
        node id → (num_examples, metrics) for every client whose masked vector was aggregated; the
        metrics include the client's ``client-id``, signed ``sha256`` of Δ_i and ``signature``.
    info : dict
        ``{"protocol": "SecAgg+", "clients_sampled", "clients_aggregated", "max_weight",
        "clipping_range", "reconstruction_threshold", "unmask_s"}``.
    """
    from flwr.app import ConfigRecord as _ConfigRecord
    from flwr.common import FitIns, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.compat.common.recorddict_compat import parameters_to_arrayrecord
    from flwr.server.client_manager import SimpleClientManager
    from flwr.server.compat.grid_client_proxy import GridClientProxy
    from flwr.server.compat.legacy_context import LegacyContext
    from flwr.server.strategy import FedAvg as LegacyFedAvg
    from flwr.server.workflow import SecAggPlusWorkflow
    from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
    from flwr.server.workflow.constant import Key as WorkflowKey

    captured: dict = {}

    class _Round(LegacyFedAvg):
        # The workflow asks the strategy whom to train and hands it the unmasked mean; nothing else.
        def configure_fit(self, server_round, parameters, client_manager):
            return [(GridClientProxy(n, grid, context.run_id), FitIns(parameters, dict(train_config))) for n in nodes]

        def aggregate_fit(self, server_round, results, failures):
            captured["results"] = [(proxy.node_id, fit.num_examples, dict(fit.metrics)) for proxy, fit in results]
            if results:  # the workflow put the unmasked mean in every result
                captured["mean"] = parameters_to_ndarrays(results[0][1].parameters)
            return (results[0][1].parameters if results else None), {}

    class _Workflow(SecAggPlusWorkflow):
        # Flower counts a client lost before it shared its keys as "dead": it asks the others for shares of
        # a secret they never received (a KeyError in every client, the round halts) and would remove
        # pairwise masks that were never added. Such a client never masked anything, so it leaves the
        # protocol instead: after the key-sharing stage the sampled set and every neighbourhood shrink to
        # the clients still answering. A client lost after sharing its keys (while training) is unmasked
        # from its neighbours' shares, as the protocol intends.
        def share_keys_stage(self, grid_, context_, state):
            ok = super().share_keys_stage(grid_, context_, state)
            state.sampled_node_ids = set(state.active_node_ids)
            for node in state.nid_to_neighbours:
                state.nid_to_neighbours[node] &= state.active_node_ids
            return ok

        def unmask_stage(self, grid_, context_, state):
            started = time.perf_counter()
            try:
                return super().unmask_stage(grid_, context_, state)
            finally:
                captured["unmask_s"] = time.perf_counter() - started

    legacy = LegacyContext(context, strategy=_Round(), client_manager=SimpleClientManager())
    legacy.state.config_records[MAIN_CONFIGS_RECORD] = _ConfigRecord({WorkflowKey.CURRENT_ROUND: round_number})
    legacy.state.array_records[MAIN_PARAMS_RECORD] = parameters_to_arrayrecord(
        ndarrays_to_parameters([np.asarray(a) for a in arrays]), keep_input=True)
    workflow = _Workflow(num_shares=1.0, reconstruction_threshold=reconstruction_threshold, max_weight=max_weight,
                         clipping_range=clipping_range, timeout=timeout_s)
    workflow(grid, legacy)
    info = {
        "protocol": "SecAgg+", "clients_sampled": len(nodes), "clients_aggregated": len(captured.get("results", [])),
        "max_weight": max_weight, "clipping_range": clipping_range,
        "reconstruction_threshold": reconstruction_threshold, "unmask_s": round(captured.get("unmask_s", 0.0), 4),
    }
    if "mean" not in captured:
        return None, {}, info
    answers = {node: (num, metrics) for node, num, metrics in captured["results"]}
    return [np.asarray(m, dtype=np.float64) for m in captured["mean"]], answers, info


def _reputation(history: list[dict], cfg, clients: list[str]) -> dict:
    """Reputation of ``clients`` after the rounds in ``history`` (RTIFed; 1 for other strategies)."""
    if str(cfg["strategy"]) != "rtifed":
        return {}
    contributions = [h.get("contributions", {}) for h in history if h.get("contributions") is not None]
    asked: dict[str, int] = {}
    answered: dict[str, int] = {}
    for h in history:
        for cid, row in h.get("clients", {}).items():
            if row.get("status") in ("answered", "absent", "failed"):
                asked[cid] = asked.get(cid, 0) + 1
                answered[cid] = answered.get(cid, 0) + (row.get("status") == "answered")
    resource = {c: (answered.get(c, 0) / asked[c] if asked.get(c) else 1.0) for c in set(clients) | set(asked)}
    direct = rtifed.direct_reputation(contributions, decay=0.5, resource=resource, resource_weight=0.2)
    indirect = decode_json(str(cfg.get("indirect-reputation", "") or ""), {})
    blended = rtifed.blend_reputation(direct, indirect, epsilon=float(cfg.get("reputation-epsilon", 0.7)))
    return {c: blended.get(c, 0.5) for c in set(clients) | set(blended)}


def _select(strategy: str, cfg, nodes: list[int], identities: dict, reputation: dict, history: list[dict]):
    """Choose the round's clients and their local epochs (RIAS + OTDS under RTIFed)."""
    epochs = int(cfg["local-epochs"])
    if strategy != "rtifed":
        return nodes, {identities[n]["client_id"]: epochs for n in nodes}, {}
    by_client = {identities[n]["client_id"]: n for n in nodes}
    richness = {cid: _richness(identities[n]["label_stats"]) for cid, n in by_client.items()}
    k = int(cfg.get("select-k", 0) or 0) or len(by_client)
    k = max(k, int(cfg["min-clients"]))
    chosen = rtifed.rias_select(
        {c: reputation.get(c, 0.5) for c in by_client}, richness, k, minimum_reputation=float(cfg.get("min-reputation", 0.25))
    )
    if len(chosen) < int(cfg["min-clients"]):
        # Too few reputable clients: fall back to the best key values regardless of the threshold.
        chosen = rtifed.rias_select({c: reputation.get(c, 0.5) for c in by_client}, richness, k)
    # Cost per epoch: last measured seconds per example, relative to the median client.
    last = {}
    for h in history:
        for cid, row in h.get("clients", {}).items():
            if row.get("status") == "answered" and row.get("num_examples"):
                last[cid] = row["metrics"]["train-s"] / max(1, row["metrics"].get("epochs", 1)) / row["num_examples"]
    median = float(np.median(list(last.values()))) if last else 1.0
    cost = {c: (last[c] / median if c in last and median > 0 else 1.0) for c in chosen}
    result = rtifed.otds_stackelberg(
        {c: max(reputation.get(c, 0.5), 1e-3) for c in chosen}, cost, {c: 1e6 for c in chosen},
        value=4.0 * epochs, max_epochs=epochs,
    )
    otds = {"payment": round(result.payment, 6), "richness": {c: round(richness[c], 6) for c in chosen}}
    return [by_client[c] for c in chosen], result.epochs, otds


def _flower_fedavg(grid: Grid, context: Context, outbox: Path) -> None:
    """Flower's own FedAvg strategy over the same ClientApp: the baseline for coordination overhead."""
    from flwr.serverapp.strategy import FedAvg

    from .local import initial_arrays

    cfg = context.run_config
    spec = _spec_from(cfg)
    min_clients = int(cfg["min-clients"])
    wait_for_nodes(grid, min_clients, float(cfg.get("wait-clients-s", 120)))
    round_marks: list[float] = []

    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=min_clients, min_available_nodes=min_clients,
                      min_evaluate_nodes=0)

    original = strategy.aggregate_train

    def aggregate_train(server_round, replies):
        replies = list(replies)
        round_marks.append(time.perf_counter())
        train_s = [float(r.content["metrics"]["train-s"]) for r in replies if not r.has_error()]
        out = original(server_round, replies)
        _write_json(outbox / f"flower-round-{server_round:04d}.json",
                    {"round_number": server_round, "slowest_train_s": max(train_s) if train_s else None, "mark": round_marks[-1]})
        return out

    strategy.aggregate_train = aggregate_train
    started = time.perf_counter()
    strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(initial_arrays(spec, seed=int(cfg.get("seed", 0)))),
        num_rounds=int(cfg["num-rounds"]),
        timeout=float(cfg.get("round-timeout-s", 600)),
        train_config=ConfigRecord(
            {"local-epochs": int(cfg["local-epochs"]), "task-id": str(cfg["task-id"]), "spec": str(cfg["spec"])}
        ),
    )
    _write_json(outbox / "done.json", {"rounds": int(cfg["num-rounds"]), "started": started, "marks": round_marks})
