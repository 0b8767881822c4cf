"""The Flower ServerApp (coordinator) and ClientApp (hospital) of a federated segmentation task.

Launched by Flower's deployment engine (``flower-superlink``, ``flower-supernode``, ``flwr run``; see
:mod:`federation.fl.launcher`). Nothing here touches Django: the coordinator writes each completed
round to an *outbox* folder (``round-NNNN.npz`` global weights + ``round-NNNN.json`` metrics, client
statements and signatures), which the portal ingests; it reads earlier rounds back from the same
folder when it is restarted.

Run config (``[tool.flwr.app.config]``): ``task-id``, ``num-rounds``, ``start-round``, ``local-epochs``,
``strategy`` (``fedavg``/``fedprox``/``rtifed``/``flower-fedavg``), ``mu``, ``min-clients``,
``round-timeout-s``, ``wait-clients-s``, ``outbox``, ``initial-weights`` (an ``.npz`` or empty),
``validation-dir`` (the coordinator's own labelled set, needed by RTIFed), ``spec``
(:func:`encode_json` of :class:`federation.fl.local.ModelSpec` fields), ``seed``, ``reputation-epsilon``,
``indirect-reputation`` (:func:`encode_json` of client → reputation), ``dp-clipping-norm``/``dp-epsilon``/
``dp-delta`` (local differential privacy with Flower's ``LocalDpMod``; clipping norm 0 = off), ``min-reputation``, ``select-k`` (0 = every qualifying client).

Node config of each SuperNode: ``client-id``, ``data-dir`` (its own MSD folder, the only data it
reads), ``signing-key`` (its Ed25519 PEM), ``threads``.
"""

from __future__ import annotations

import base64
import json
import math
import os
import time
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from . import rtifed
from .aggregation import fedavg
from .ledger import KIND_CLIENT_UPDATE, client_statement, load_private_key, sign_bytes

serverapp = ServerApp()
clientapp = ClientApp()

_DATA_CACHE: dict = {}


# --------------------------------------------------------------------------------------------------
# Client (hospital)
# --------------------------------------------------------------------------------------------------


def _node_settings(context: Context) -> dict:
    cfg = context.node_config
    threads = int(cfg.get("threads", 1) or 1)
    import torch

    torch.set_num_threads(max(1, threads))
    return {
        "client_id": str(cfg["client-id"]),
        "data_dir": Path(str(cfg["data-dir"])),
        "signing_key": Path(str(cfg["signing-key"])),
    }


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


def _local_data(data_dir: Path, patch_size):
    from .data import load_cases

    key = (str(data_dir), tuple(patch_size))
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_cases(data_dir, patch_size=patch_size)
    return _DATA_CACHE[key]


@clientapp.query()
def query(msg: Message, context: Context) -> Message:
    """Answer who this hospital is and its label statistics (counts only, never images)."""
    from .data import label_statistics

    node = _node_settings(context)
    stats = label_statistics(node["data_dir"])
    return Message(
        RecordDict({"config": ConfigRecord({"client-id": node["client_id"], "label-stats": json.dumps(stats)})}),
        reply_to=msg,
    )


def privatise_update(msg: Message, context: Context, trained, *, clipping_norm: float, epsilon: float, delta: float) -> list[np.ndarray]:
    """Clip a client's update and add Gaussian noise with Flower's ``LocalDpMod``.

    The update ``Δ = trained − received`` (received: the arrays of ``msg``) is scaled to L2 norm
    ≤ ``clipping_norm`` and noise with σ = ``clipping_norm``·√(2 ln(1.25/δ))/ε is added to every weight
    (the Gaussian mechanism, Dwork & Roth, "The Algorithmic Foundations of Differential Privacy", 2014,
    Thm. A.1; the L2 sensitivity of a clipped update is the clipping norm).

    Parameters
    ----------
    msg, context : flwr Message and Context
        The train message as received (one ArrayRecord) and the ClientApp's context.
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
    received = msg.content["arrays"]

    def call_next(incoming, ctxt):
        keys = list(received.keys())
        return Message(RecordDict({"arrays": ArrayRecord(dict(zip(keys, map(_array, trained))))}), reply_to=incoming)

    out = mod(msg, context, call_next)
    if out.has_error():
        raise ValueError(f"LocalDpMod failed: {out.error.reason}")
    return out.content["arrays"].to_numpy_ndarrays()


def _array(value):
    from flwr.app import Array

    return Array(np.asarray(value))


@clientapp.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received global model on this hospital's own cases, apply local DP when the task asks
    for it, and sign the update that is sent."""
    from .local import arrays_sha256, evaluate_dice, train_local

    node = _node_settings(context)
    config = msg.content["config"]
    spec = _spec_from(config if "spec" in config else context.run_config)
    arrays = msg.content["arrays"].to_numpy_ndarrays()
    data = _local_data(node["data_dir"], spec.patch_size)
    before = evaluate_dice(arrays, data, spec)
    round_number = int(config.get("server-round", config.get("round", 0)))
    epochs = int(config.get("local-epochs", context.run_config.get("local-epochs", 1)))
    mu = float(config.get("mu", context.run_config.get("mu", 0.0)))
    seed = int(context.run_config.get("seed", 0)) * 1000 + round_number * 17 + sum(map(ord, node["client_id"]))
    result = train_local(arrays, data, spec, epochs=epochs, mu=mu, seed=seed)
    sent = result.arrays
    clip = float(config.get("dp-clipping-norm", 0.0) or 0.0)
    if clip > 0:
        sent = privatise_update(msg, context, sent, clipping_norm=clip, epsilon=float(config["dp-epsilon"]),
                                delta=float(config["dp-delta"]))
    sha = arrays_sha256(sent)
    metrics = {
        "loss": round(result.loss, 6),
        "dice-local": round(before["dice"], 6),
        "train-s": round(result.duration_s, 4),
        "epochs": epochs,
    }
    task_id = str(config.get("task-id", context.run_config.get("task-id", "")))
    statement = client_statement(
        task_id=task_id, round_number=round_number, kind=KIND_CLIENT_UPDATE, client=node["client_id"],
        update_sha256=sha, num_examples=len(data), metrics=metrics,
    )
    signature = sign_bytes(load_private_key(node["signing_key"].read_bytes()), statement)
    return Message(
        RecordDict(
            {
                "arrays": ArrayRecord(sent),
                "metrics": MetricRecord({**metrics, "num-examples": len(data)}),
                "config": ConfigRecord({"client-id": node["client_id"], "sha256": sha, "signature": signature}),
            }
        ),
        reply_to=msg,
    )


@clientapp.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Return the Dice of the received model on this hospital's own cases."""
    from .local import evaluate_dice

    node = _node_settings(context)
    config = msg.content["config"] if "config" in msg.content else {}
    spec = _spec_from(config if "spec" in config else context.run_config)
    data = _local_data(node["data_dir"], spec.patch_size)
    scores = evaluate_dice(msg.content["arrays"].to_numpy_ndarrays(), data, spec)
    return Message(RecordDict({"metrics": MetricRecord({"dice": scores["dice"], "num-examples": len(data)})}), reply_to=msg)


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


def _wait_for_nodes(grid: Grid, minimum: int, timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= minimum or time.monotonic() > deadline:
            return nodes
        time.sleep(0.5)


def _ask_identities(grid: Grid, nodes: list[int], timeout_s: float) -> dict[int, dict]:
    messages = [Message(RecordDict({"config": ConfigRecord({})}), message_type="query", dst_node_id=n) for n in nodes]
    identities = {}
    for reply in grid.send_and_receive(messages, timeout=timeout_s):
        if reply.has_error():
            continue
        cfg = reply.content["config"]
        identities[reply.metadata.src_node_id] = {
            "client_id": str(cfg["client-id"]),
            "label_stats": json.loads(str(cfg["label-stats"])),
        }
    return identities


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
        _run_rounds(grid, cfg, outbox, strategy)
    except Exception as exc:  # the portal must learn why the coordinator stopped
        _write_json(outbox / "failed.json", {"error": f"{type(exc).__name__}: {exc}"})
        raise


def _run_rounds(grid: Grid, cfg, outbox: Path, strategy: str) -> None:
    from .data import load_cases
    from .local import arrays_sha256, evaluate_dice, initial_arrays

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

    _status(outbox, state="waiting_for_clients", round=start)
    nodes = _wait_for_nodes(grid, min_clients, float(cfg.get("wait-clients-s", 120)))
    if len(nodes) < min_clients:
        raise RuntimeError(f"only {len(nodes)} client(s) connected, the task needs {min_clients}")
    identities = _ask_identities(grid, nodes, timeout_s)

    for round_number in range(start, num_rounds + 1):
        round_started = time.perf_counter()
        # Clients may have joined or left since the last round.
        nodes = sorted(grid.get_node_ids())
        unknown = [n for n in nodes if n not in identities]
        if unknown:
            identities.update(_ask_identities(grid, unknown, timeout_s))
        nodes = [n for n in nodes if n in identities]
        reputation = _reputation(history, cfg, [identities[n]["client_id"] for n in nodes])
        selected, epochs_by_client, otds = _select(strategy, cfg, nodes, identities, reputation, history)
        _status(outbox, state="training", round=round_number, selected=[identities[n]["client_id"] for n in selected])
        sent_at = time.perf_counter()
        global_sha = arrays_sha256(arrays)
        messages = []
        for n in selected:
            cid = identities[n]["client_id"]
            messages.append(
                Message(
                    RecordDict(
                        {
                            "arrays": ArrayRecord(arrays),
                            "config": ConfigRecord(
                                {
                                    "server-round": round_number, "local-epochs": int(epochs_by_client[cid]),
                                    "mu": mu, "task-id": str(cfg["task-id"]), "spec": str(cfg["spec"]),
                                    "global-sha256": global_sha,
                                    "dp-clipping-norm": float(cfg.get("dp-clipping-norm", 0.0) or 0.0),
                                    "dp-epsilon": float(cfg.get("dp-epsilon", 0.0) or 0.0),
                                    "dp-delta": float(cfg.get("dp-delta", 0.0) or 0.0),
                                }
                            ),
                        }
                    ),
                    message_type="train",
                    dst_node_id=n,
                )
            )
        replies = list(grid.send_and_receive(messages, timeout=timeout_s))
        received_at = time.perf_counter()
        updates, clients = {}, {}
        for reply in replies:
            node = reply.metadata.src_node_id
            cid = identities.get(node, {}).get("client_id")
            if cid is None:
                continue
            if reply.has_error():
                clients[cid] = {"status": "failed", "error": str(reply.error.reason)[:200]}
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
        for n in selected:
            cid = identities[n]["client_id"]
            clients.setdefault(cid, {"status": "absent"})
        for n in nodes:
            cid = identities[n]["client_id"]
            clients.setdefault(cid, {"status": "not_selected"})
        if len(updates) < min_clients:
            raise RuntimeError(
                f"round {round_number}: {len(updates)} client(s) answered, the task needs {min_clients}"
            )

        aggregation_started = time.perf_counter()
        shapley, shapley_info = {}, {}
        base_dice = evaluate_dice(arrays, validation, spec)["dice"] if validation is not None else math.nan
        if strategy == "rtifed":
            cache: dict = {}

            def utility(coalition: frozenset) -> float:
                key = tuple(sorted(coalition))
                if key not in cache:
                    agg = fedavg([updates[c][0] for c in key], [updates[c][1] for c in key])
                    cache[key] = evaluate_dice(agg, validation, spec)["dice"] - base_dice
                return cache[key]

            shapley, shapley_info = rtifed.shapley_values(sorted(updates), utility, seed=round_number)
            contributions = rtifed.normalise_contributions(shapley)
            history_for_rep = history + [{"contributions": contributions, "clients": clients}]
            reputation = _reputation(history_for_rep, cfg, list(updates))
            weights = [updates[c][1] * max(reputation.get(c, 0.0), 0.0) for c in sorted(updates)]
            if sum(weights) <= 0:
                weights = [updates[c][1] for c in sorted(updates)]
            arrays = fedavg([updates[c][0] for c in sorted(updates)], weights)
        else:
            contributions = {}
            arrays = fedavg([updates[c][0] for c in sorted(updates)], [updates[c][1] for c in sorted(updates)])
        aggregation_s = time.perf_counter() - aggregation_started
        for cid in clients:
            if cid in reputation:
                clients[cid]["reputation"] = round(float(reputation[cid]), 6)
            if cid in shapley:
                clients[cid]["shapley"] = round(float(shapley[cid]), 6)
            if cid in epochs_by_client:
                clients[cid]["epochs_assigned"] = int(epochs_by_client[cid])
        val = evaluate_dice(arrays, validation, spec) if validation is not None else None
        train_times = [clients[c]["metrics"]["train-s"] for c in updates]
        round_s = time.perf_counter() - round_started
        record = {
            "task_id": str(cfg["task-id"]),
            "round_number": round_number,
            "strategy": strategy,
            "global_sha256": arrays_sha256(arrays),
            "num_examples": sum(n for _, n in updates.values()),
            "clients": clients,
            "contributions": contributions,
            "shapley": shapley_info,
            "otds": otds,
            "dp": {k: float(cfg.get(k, 0.0) or 0.0) for k in ("dp-clipping-norm", "dp-epsilon", "dp-delta")},
            "metrics": {
                "val_dice": None if val is None else round(val["dice"], 6),
                "val_dice_per_label": None if val is None else {str(k): v for k, v in val["dice_per_label"].items()},
                "loss": round(float(np.mean([clients[c]["metrics"]["loss"] for c in updates])), 6),
                "dice_local": round(
                    float(np.average([clients[c]["metrics"]["dice-local"] for c in updates],
                                     weights=[updates[c][1] for c in updates])), 6),
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
    _wait_for_nodes(grid, min_clients, float(cfg.get("wait-clients-s", 120)))
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
