"""RTIFed: reputation from Shapley contributions, reputation-aware client selection (RIAS) and
Stackelberg local-epoch choice (OTDS).

The design follows the project's RTIFed seed design (reputation + Shapley + Stackelberg incentives);
every part is a pure function so it can be checked by hand:

* contribution: the Shapley value (Shapley, "A value for n-person games", Contributions to the Theory
  of Games II, 1953) of each client's update, the utility of a coalition being the validation Dice of
  the FedAvg of its members' updates; exact enumeration up to :data:`MAX_EXACT_CLIENTS` clients, Monte
  Carlo permutation sampling beyond (Ghorbani & Zou, "Data Shapley", ICML 2019; Castro et al.,
  Computers & OR 36(5), 2009) with a permutation count from Hoeffding's inequality;
* direct reputation: time-decayed mean of normalised contributions, blended with a resource term;
* reputation: ``R = ε·R_direct + (1 − ε)·R_indirect``;
* RIAS: key value = reputation × information richness (normalised Shannon entropy of a client's label
  distribution over recent rounds); the top ``k`` are selected;
* OTDS: the coordinator (leader) sets a payment per epoch, each selected client (follower) chooses its
  local epochs from its cost/reputation ratio and remaining budget; solved by backward induction.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MAX_EXACT_CLIENTS",
    "shapley_exact",
    "shapley_monte_carlo",
    "monte_carlo_permutations",
    "shapley_values",
    "normalise_contributions",
    "direct_reputation",
    "blend_reputation",
    "information_richness",
    "rias_select",
    "OtdsResult",
    "otds_best_response",
    "otds_stackelberg",
]

MAX_EXACT_CLIENTS = 8

Utility = Callable[[frozenset], float]


def _cached(utility: Utility) -> Utility:
    cache: dict[frozenset, float] = {}

    def value(coalition: frozenset) -> float:
        if coalition not in cache:
            cache[coalition] = 0.0 if not coalition else float(utility(coalition))
        return cache[coalition]

    value.cache = cache  # type: ignore[attr-defined]
    return value


def shapley_exact(clients: Sequence[Hashable], utility: Utility) -> dict:
    """Return each client's exact Shapley value.

    ``φ_i = Σ_{S ⊆ N∖{i}} |S|! (n − |S| − 1)! / n! · (v(S ∪ {i}) − v(S))`` (Shapley 1953), with
    ``v(∅) = 0``. Costs ``2^n`` utility evaluations (each coalition once).

    Parameters
    ----------
    clients : sequence of hashable
        Distinct client ids, ``1 ≤ n ≤`` :data:`MAX_EXACT_CLIENTS`.
    utility : callable
        ``utility(frozenset_of_clients) -> float``; called once per non-empty coalition.

    Returns
    -------
    dict
        Client id → Shapley value; the values sum to ``v(N)`` (efficiency).

    Raises
    ------
    ValueError
        No client, duplicate ids, or more than :data:`MAX_EXACT_CLIENTS` clients.
    """
    clients = list(clients)
    n = len(clients)
    if n == 0:
        raise ValueError("Shapley values need at least one client")
    if len(set(clients)) != n:
        raise ValueError("client ids must be distinct")
    if n > MAX_EXACT_CLIENTS:
        raise ValueError(f"exact Shapley enumeration is limited to {MAX_EXACT_CLIENTS} clients, got {n}")
    v = _cached(utility)
    weights = [math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)]
    values = {}
    for i in clients:
        others = [c for c in clients if c != i]
        total = 0.0
        for size in range(n):
            for subset in itertools.combinations(others, size):
                s = frozenset(subset)
                total += weights[size] * (v(s | {i}) - v(s))
        values[i] = total
    return values


def monte_carlo_permutations(n_clients: int, *, epsilon: float, delta: float, utility_range: float = 1.0) -> int:
    """Return how many random permutations bound every Shapley estimate's error.

    Each sampled marginal contribution lies in ``[−r, r]`` for a utility with range ``r`` (Dice: ``r = 1``),
    so by Hoeffding's inequality and a union bound over the ``n`` clients,
    ``P(max_i |φ̂_i − φ_i| ≥ ε) ≤ 2n·exp(−m ε² / (2 r²))``; the smallest ``m`` with a bound ``≤ δ`` is
    ``m = ⌈2 r² ln(2n/δ) / ε²⌉`` (the bound used for Data Shapley, Ghorbani & Zou 2019, §3).

    Raises
    ------
    ValueError
        ``n_clients < 1``, ``epsilon`` or ``utility_range`` not positive, or ``delta`` outside (0, 1).
    """
    if n_clients < 1:
        raise ValueError("need at least one client")
    if not epsilon > 0 or not utility_range > 0:
        raise ValueError("epsilon and utility_range must be positive")
    if not 0 < delta < 1:
        raise ValueError("delta must lie in (0, 1)")
    return int(math.ceil(2.0 * utility_range**2 * math.log(2.0 * n_clients / delta) / epsilon**2))


def shapley_monte_carlo(
    clients: Sequence[Hashable], utility: Utility, *, num_permutations: int, seed: int = 0
) -> dict:
    """Estimate Shapley values by averaging marginal contributions over random permutations.

    For each sampled ordering π, client ``i``'s marginal contribution is ``v(P_i^π ∪ {i}) − v(P_i^π)``
    with ``P_i^π`` the clients before ``i``; the estimate is the mean over orderings (Castro et al. 2009;
    Ghorbani & Zou 2019, Algorithm 1 without truncation). Coalition utilities are cached.

    Parameters
    ----------
    clients : sequence of hashable
        Distinct client ids.
    utility : callable
        ``utility(frozenset) -> float``.
    num_permutations : int
        Orderings to sample (see :func:`monte_carlo_permutations`).
    seed : int
        Seed of the NumPy generator that draws the orderings (deterministic results).

    Raises
    ------
    ValueError
        No client, duplicate ids, or ``num_permutations < 1``.
    """
    clients = list(clients)
    if not clients:
        raise ValueError("Shapley values need at least one client")
    if len(set(clients)) != len(clients):
        raise ValueError("client ids must be distinct")
    if num_permutations < 1:
        raise ValueError("num_permutations must be at least 1")
    v = _cached(utility)
    rng = np.random.default_rng(seed)
    totals = {c: 0.0 for c in clients}
    for _ in range(num_permutations):
        order = [clients[j] for j in rng.permutation(len(clients))]
        before: frozenset = frozenset()
        previous = 0.0
        for c in order:
            coalition = before | {c}
            current = v(coalition)
            totals[c] += current - previous
            before, previous = coalition, current
    return {c: totals[c] / num_permutations for c in clients}


def shapley_values(
    clients: Sequence[Hashable], utility: Utility, *, epsilon: float = 0.1, delta: float = 0.05, seed: int = 0
) -> tuple[dict, dict]:
    """Return Shapley values, exact up to :data:`MAX_EXACT_CLIENTS` clients and sampled beyond.

    Returns
    -------
    (dict, dict)
        Values per client, and how they were computed: ``{"method": "exact"|"monte_carlo",
        "evaluations": int, "permutations": int?, "epsilon": float?, "delta": float?}`` where the sampled
        values are within ``epsilon`` of the exact ones with probability ``≥ 1 − delta``.
    """
    counted = _cached(utility)
    if len(clients) <= MAX_EXACT_CLIENTS:
        values = shapley_exact(clients, counted)
        return values, {"method": "exact", "evaluations": len(counted.cache)}  # type: ignore[attr-defined]
    m = monte_carlo_permutations(len(clients), epsilon=epsilon, delta=delta)
    values = shapley_monte_carlo(clients, counted, num_permutations=m, seed=seed)
    return values, {
        "method": "monte_carlo", "permutations": m, "epsilon": epsilon, "delta": delta,
        "evaluations": len(counted.cache),  # type: ignore[attr-defined]
    }


def normalise_contributions(values: Mapping, num_examples: Mapping | None = None) -> dict:
    """Map one round's Shapley values to [0, 1]: ``max(q_i, 0) / max_j max(q_j, 0)``.

    ``q_i = φ_i`` or, given ``num_examples``, the contribution per case ``q_i = φ_i / n_i``. Under
    example-weighted aggregation a large hospital's update dominates every coalition it joins, so raw
    Shapley values rank hospitals by size as much as by label quality; per case, a small hospital with
    good labels scores like a large one, and a hospital whose labels harm the model still scores 0 (the
    aggregation weight ``n_i·R_i`` counts the size once). A client that harmed the coalition
    (``q ≤ 0``) scores 0; when nobody helped, everyone scores 0.

    Raises
    ------
    ValueError
        A client of ``values`` without a positive number of examples in ``num_examples``.
    """
    if num_examples is not None:
        bad = [c for c in values if not num_examples.get(c, 0) > 0]
        if bad:
            raise ValueError(f"clients without a positive number of examples: {sorted(bad)}")
        values = {c: float(v) / float(num_examples[c]) for c, v in values.items()}
    positive = {c: max(float(v), 0.0) for c, v in values.items()}
    top = max(positive.values(), default=0.0)
    return {c: (v / top if top > 0 else 0.0) for c, v in positive.items()}


def direct_reputation(
    contributions: Sequence[Mapping],
    *,
    decay: float = 0.5,
    resource: Mapping | None = None,
    resource_weight: float = 0.2,
    prior: float = 0.5,
) -> dict:
    """Combine per-round normalised contributions into a direct reputation in [0, 1].

    ``C_i = Σ_t e^{−λ(T−t)} c_{i,t} / Σ_t e^{−λ(T−t)}`` over the rounds ``t`` in which ``i`` was scored
    (``T`` the latest round, ``λ = decay``), then ``R_direct,i = (1 − β)·C_i + β·ρ_i`` with ``ρ_i`` the
    resource term (share of requested rounds the client answered, in [0, 1]) and ``β = resource_weight``.
    A client never scored has ``C_i = prior``.

    Parameters
    ----------
    contributions : sequence of mapping
        Oldest round first; round ``t`` maps client id → normalised contribution in [0, 1] (see
        :func:`normalise_contributions`). Clients absent from a round are simply not scored in it.
    decay : float
        ``λ ≥ 0`` per round; 0 weighs every round equally.
    resource : mapping, optional
        Client id → ``ρ_i`` in [0, 1]; missing clients get 1.
    resource_weight : float
        ``β`` in [0, 1].
    prior : float
        Contribution of a client with no scored round.

    Raises
    ------
    ValueError
        ``decay < 0``, ``resource_weight`` or a resource value outside [0, 1].
    """
    if decay < 0:
        raise ValueError("decay must be non-negative")
    if not 0 <= resource_weight <= 1:
        raise ValueError("resource_weight must lie in [0, 1]")
    resource = dict(resource or {})
    for c, r in resource.items():
        if not 0 <= r <= 1:
            raise ValueError(f"resource term of {c!r} must lie in [0, 1], got {r}")
    clients = set(resource)
    for round_values in contributions:
        clients.update(round_values)
    latest = len(contributions) - 1
    result = {}
    for c in clients:
        num = den = 0.0
        for t, round_values in enumerate(contributions):
            if c in round_values:
                w = math.exp(-decay * (latest - t))
                num += w * float(round_values[c])
                den += w
        score = num / den if den > 0 else prior
        result[c] = (1 - resource_weight) * score + resource_weight * float(resource.get(c, 1.0))
    return result


def blend_reputation(direct: Mapping, indirect: Mapping | None = None, *, epsilon: float = 0.7) -> dict:
    """Return ``R = ε·R_direct + (1 − ε)·R_indirect`` per client.

    ``R_indirect`` is the reputation other task owners report for the client (their mean); a client with
    no indirect report keeps its direct reputation.

    Raises
    ------
    ValueError
        ``epsilon`` outside [0, 1].
    """
    if not 0 <= epsilon <= 1:
        raise ValueError("epsilon must lie in [0, 1]")
    indirect = indirect or {}
    return {
        c: (epsilon * float(r) + (1 - epsilon) * float(indirect[c])) if c in indirect else float(r)
        for c, r in direct.items()
    }


def information_richness(label_counts: Sequence[Mapping[int, float]]) -> float:
    """Return the normalised Shannon entropy of a client's label distribution over recent rounds.

    ``H = −Σ_l p_l ln p_l / ln L`` with ``p_l`` the share of label ``l`` (background included) among
    the voxel counts summed over the given rounds and ``L`` the number of labels seen in any round;
    1 for a perfectly balanced distribution, 0 for a single label or no data.

    Parameters
    ----------
    label_counts : sequence of mapping
        One mapping label → count (voxels or cases) per recent round.

    Raises
    ------
    ValueError
        A negative count.
    """
    totals: dict[int, float] = {}
    for counts in label_counts:
        for label, count in counts.items():
            if count < 0:
                raise ValueError(f"label {label} has a negative count")
            totals[int(label)] = totals.get(int(label), 0.0) + float(count)
    if len(totals) < 2:
        return 0.0
    n = sum(totals.values())
    if n <= 0:
        return 0.0
    entropy = -sum((c / n) * math.log(c / n) for c in totals.values() if c > 0)
    return float(entropy / math.log(len(totals)))


def rias_select(reputation: Mapping, richness: Mapping, k: int, *, minimum_reputation: float = 0.0) -> list:
    """Select the ``k`` clients with the largest key value ``reputation × richness``.

    Ties break on the client id (sorted as strings) so selection is deterministic. Clients below
    ``minimum_reputation`` are never selected.

    Returns
    -------
    list
        Selected client ids, best first (fewer than ``k`` when fewer qualify).

    Raises
    ------
    ValueError
        ``k < 1``.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    keys = {
        c: float(reputation[c]) * float(richness.get(c, 0.0))
        for c in reputation
        if float(reputation[c]) >= minimum_reputation
    }
    ranked = sorted(keys, key=lambda c: (-keys[c], str(c)))
    return ranked[:k]


@dataclass(frozen=True)
class OtdsResult:
    """The Stackelberg equilibrium of one round.

    Attributes
    ----------
    payment : float
        The coordinator's payment per (reputation-weighted) local epoch.
    epochs : dict
        Client id → local epochs (integer in ``[1, max_epochs]``).
    leader_utility : float
    """

    payment: float
    epochs: dict
    leader_utility: float


def otds_best_response(payment: float, reputation: float, cost: float, *, budget: float, max_epochs: int) -> float:
    """Return a client's utility-maximising (continuous) local epochs for a payment.

    The client earns ``p·R·e`` and pays ``c·e²/2`` for ``e`` epochs, so its utility
    ``u(e) = p R e − c e²/2`` peaks at ``e* = p R / c`` — the inverse of its cost/reputation ratio times
    the payment — clipped to ``[0, max_epochs]`` and to what its remaining budget allows
    (``c e²/2 ≤ budget``, i.e. ``e ≤ √(2 budget / c)``). :func:`otds_stackelberg` rounds it to a whole
    number of epochs, at least one.

    Raises
    ------
    ValueError
        Non-positive cost, negative payment/reputation/budget, or ``max_epochs < 1``.
    """
    if cost <= 0:
        raise ValueError("cost must be positive")
    if payment < 0 or reputation < 0 or budget < 0:
        raise ValueError("payment, reputation and budget cannot be negative")
    if max_epochs < 1:
        raise ValueError("max_epochs must be at least 1")
    e = payment * reputation / cost
    cap = min(float(max_epochs), math.sqrt(2.0 * budget / cost))
    return float(min(max(e, 0.0), cap))


def otds_stackelberg(
    reputation: Mapping,
    cost: Mapping,
    budget: Mapping,
    *,
    value: float = 4.0,
    max_epochs: int = 10,
    max_payment: float = 100.0,
) -> OtdsResult:
    """Solve the coordinator–clients Stackelberg game for local epochs by backward induction.

    Followers answer with :func:`otds_best_response`. The leader's utility is
    ``U(p) = value · Σ_i ln(1 + R_i e_i(p)) − p · Σ_i R_i e_i(p)`` (diminishing returns on
    reputation-weighted work, minus what it pays); it picks ``p ∈ [0, max_payment]`` maximising ``U``
    (bounded scalar search, then a fine grid check), and epochs are rounded to integers.
    For one client with ``R = c = 1`` and no binding cap, ``U(p) = v ln(1 + p) − p²`` so
    ``p* = (√(1 + 2v) − 1)/2`` (``v = 4`` → ``p* = 1``, one epoch).

    Parameters
    ----------
    reputation, cost, budget : mapping
        Client id → ``R_i`` (≥ 0), cost per squared epoch ``c_i`` (> 0), remaining budget (≥ 0).
    value : float
        The leader's value of reputation-weighted training (> 0).

    Raises
    ------
    ValueError
        No client, mismatched keys, or invalid values (see :func:`otds_best_response`).
    """
    from scipy.optimize import minimize_scalar

    clients = list(reputation)
    if not clients:
        raise ValueError("OTDS needs at least one client")
    if set(clients) != set(cost) or not set(clients) <= set(budget):
        raise ValueError("reputation, cost and budget must name the same clients")
    if value <= 0:
        raise ValueError("value must be positive")

    def responses(p: float) -> dict:
        return {
            c: otds_best_response(p, float(reputation[c]), float(cost[c]), budget=float(budget[c]), max_epochs=max_epochs)
            for c in clients
        }

    def leader(p: float) -> float:
        e = responses(p)
        work = sum(float(reputation[c]) * e[c] for c in clients)
        return value * sum(math.log1p(float(reputation[c]) * e[c]) for c in clients) - p * work

    best = minimize_scalar(lambda p: -leader(p), bounds=(0.0, max_payment), method="bounded", options={"xatol": 1e-6})
    p_star = float(best.x)
    # The clipped best responses make U piecewise; make sure a coarse grid finds nothing better.
    for p in np.linspace(0.0, max_payment, 401):
        if leader(float(p)) > leader(p_star) + 1e-9:
            p_star = float(p)
    epochs = {c: int(min(max_epochs, max(1, round(e)))) for c, e in responses(p_star).items()}
    return OtdsResult(payment=p_star, epochs=epochs, leader_utility=leader(p_star))
