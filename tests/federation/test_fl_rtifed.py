"""RTIFed parts on hand-computed cases (no Django)."""

import math

import pytest

from federation.fl import rtifed


def _glove_game(coalition):
    # Classic glove game: client "L" holds a left glove, "R1" and "R2" right gloves; a pair is worth 1.
    return float(min(int("L" in coalition), int("R1" in coalition) + int("R2" in coalition)))


def test_exact_shapley_of_the_glove_game():
    # Known answer: φ_L = 2/3, φ_R1 = φ_R2 = 1/6.
    values = rtifed.shapley_exact(["L", "R1", "R2"], _glove_game)
    assert values["L"] == pytest.approx(2 / 3)
    assert values["R1"] == pytest.approx(1 / 6)
    assert values["R2"] == pytest.approx(1 / 6)
    assert sum(values.values()) == pytest.approx(_glove_game({"L", "R1", "R2"}))


def test_exact_shapley_of_an_additive_game_is_each_clients_own_value():
    own = {"a": 0.1, "b": 0.3, "c": 0.0, "d": -0.2}
    values = rtifed.shapley_exact(list(own), lambda s: sum(own[c] for c in s))
    for c in own:
        assert values[c] == pytest.approx(own[c])


def test_exact_shapley_evaluates_each_coalition_once():
    calls = []
    rtifed.shapley_exact([1, 2, 3, 4], lambda s: calls.append(s) or len(s))
    assert len(calls) == 2**4 - 1 and len(set(calls)) == len(calls)


def test_exact_shapley_refuses_more_than_eight_clients_and_bad_ids():
    with pytest.raises(ValueError, match="limited to 8"):
        rtifed.shapley_exact(list(range(9)), len)
    with pytest.raises(ValueError, match="distinct"):
        rtifed.shapley_exact([1, 1], len)
    with pytest.raises(ValueError, match="at least one"):
        rtifed.shapley_exact([], len)


def test_permutation_count_follows_hoeffding():
    # m = ceil(2 r² ln(2n/δ) / ε²) with r = 1, n = 10, δ = 0.05, ε = 0.1 → ceil(200 ln 400) = 1199
    assert rtifed.monte_carlo_permutations(10, epsilon=0.1, delta=0.05) == math.ceil(200 * math.log(400))
    with pytest.raises(ValueError):
        rtifed.monte_carlo_permutations(10, epsilon=0, delta=0.05)
    with pytest.raises(ValueError):
        rtifed.monte_carlo_permutations(10, epsilon=0.1, delta=1.5)
    with pytest.raises(ValueError):
        rtifed.monte_carlo_permutations(0, epsilon=0.1, delta=0.5)


def test_monte_carlo_shapley_is_within_the_stated_error_for_twelve_clients():
    # A weighted majority game (quota 6) among 12 clients: utility in {0, 1}, range 1.
    weights = {i: (3 if i < 2 else 1) for i in range(12)}
    game = lambda s: float(sum(weights[c] for c in s) >= 6)  # noqa: E731
    values, info = rtifed.shapley_values(list(weights), game, epsilon=0.1, delta=0.05, seed=1)
    assert info["method"] == "monte_carlo" and info["permutations"] == rtifed.monte_carlo_permutations(12, epsilon=0.1, delta=0.05)
    # Symmetric players share equally, the two heavy players get more; efficiency holds exactly per sample.
    assert sum(values.values()) == pytest.approx(1.0)
    assert values[0] > values[5] and values[1] > values[7]
    # Exact values on a 12-player game are cheap enough to enumerate here for the check.
    exact = _exact_by_permutation_formula(weights, game)
    assert max(abs(values[c] - exact[c]) for c in weights) < 0.1


def _exact_by_permutation_formula(weights, game):
    import itertools

    n = len(weights)
    out = {c: 0.0 for c in weights}
    for c in weights:
        others = [o for o in weights if o != c]
        for size in range(n):
            w = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for subset in itertools.combinations(others, size):
                s = frozenset(subset)
                out[c] += w * (game(s | {c}) - game(s))
    return out


def test_shapley_values_uses_exact_enumeration_up_to_eight():
    values, info = rtifed.shapley_values(["L", "R1", "R2"], _glove_game)
    assert info == {"method": "exact", "evaluations": 7}
    assert values["L"] == pytest.approx(2 / 3)


def test_normalise_contributions_maps_the_best_to_one_and_harm_to_zero():
    assert rtifed.normalise_contributions({"a": 0.2, "b": 0.1, "c": -0.3}) == {"a": 1.0, "b": 0.5, "c": 0.0}
    assert rtifed.normalise_contributions({"a": -0.1}) == {"a": 0.0}


def test_contributions_per_case_rank_label_quality_not_size():
    # φ = 0.2 from 40 cases, 0.1 from 10, −0.3 from 20: per case 0.005, 0.01, −0.015.
    scores = rtifed.normalise_contributions({"a": 0.2, "b": 0.1, "c": -0.3}, {"a": 40, "b": 10, "c": 20})
    assert scores == {"a": pytest.approx(0.5), "b": 1.0, "c": 0.0}
    with pytest.raises(ValueError, match="positive number of examples"):
        rtifed.normalise_contributions({"a": 0.2, "b": 0.1}, {"a": 40, "b": 0})


def test_direct_reputation_decays_old_rounds_and_adds_the_resource_term():
    rounds = [{"a": 0.0, "b": 1.0}, {"a": 1.0, "b": 1.0}]
    r = rtifed.direct_reputation(rounds, decay=math.log(2), resource={"a": 1.0, "b": 0.5}, resource_weight=0.2)
    # weights: round 0 → e^{-ln2} = 0.5, round 1 → 1; C_a = (0.5·0 + 1·1)/1.5 = 2/3; C_b = 1
    assert r["a"] == pytest.approx(0.8 * 2 / 3 + 0.2 * 1.0)
    assert r["b"] == pytest.approx(0.8 * 1.0 + 0.2 * 0.5)


def test_direct_reputation_gives_unscored_clients_the_prior():
    r = rtifed.direct_reputation([], resource={"new": 1.0}, resource_weight=0.0, prior=0.5)
    assert r == {"new": 0.5}
    with pytest.raises(ValueError):
        rtifed.direct_reputation([], decay=-1)
    with pytest.raises(ValueError):
        rtifed.direct_reputation([], resource={"x": 2.0})


def test_blend_reputation():
    r = rtifed.blend_reputation({"a": 1.0, "b": 0.5}, {"a": 0.0}, epsilon=0.7)
    assert r == {"a": pytest.approx(0.7), "b": 0.5}
    with pytest.raises(ValueError):
        rtifed.blend_reputation({"a": 1.0}, epsilon=1.5)


def test_information_richness_is_normalised_entropy():
    assert rtifed.information_richness([{0: 5, 1: 5}]) == pytest.approx(1.0)
    assert rtifed.information_richness([{0: 10}]) == 0.0
    # p = (0.5, 0.25, 0.25): H = 1.5 ln 2; / ln 3
    assert rtifed.information_richness([{0: 2, 1: 1}, {2: 1}]) == pytest.approx(1.5 * math.log(2) / math.log(3))
    with pytest.raises(ValueError):
        rtifed.information_richness([{0: -1}])


def test_rias_selects_top_key_values_deterministically():
    rep = {"a": 0.9, "b": 0.5, "c": 0.9, "d": 0.05}
    rich = {"a": 0.5, "b": 1.0, "c": 0.5, "d": 1.0}
    # keys: a 0.45, b 0.5, c 0.45, d 0.05 → b, then a before c (tie on id)
    assert rtifed.rias_select(rep, rich, 3) == ["b", "a", "c"]
    assert rtifed.rias_select(rep, rich, 4, minimum_reputation=0.1) == ["b", "a", "c"]
    with pytest.raises(ValueError):
        rtifed.rias_select(rep, rich, 0)


def test_otds_one_client_matches_the_closed_form():
    result = rtifed.otds_stackelberg({"a": 1.0}, {"a": 1.0}, {"a": 100.0}, value=4.0, max_epochs=10)
    # U(p) = 4 ln(1+p) − p² → p* = (√9 − 1)/2 = 1, e* = p R / c = 1
    assert result.payment == pytest.approx(1.0, abs=1e-3)
    assert result.epochs == {"a": 1}
    assert result.leader_utility == pytest.approx(4 * math.log(2) - 1, abs=1e-5)


def test_otds_gives_more_epochs_to_cheap_reputable_clients_and_respects_budget():
    result = rtifed.otds_stackelberg(
        {"good": 1.0, "poor": 0.2, "broke": 1.0}, {"good": 0.1, "poor": 0.1, "broke": 0.1},
        {"good": 100.0, "poor": 100.0, "broke": 0.2}, value=20.0, max_epochs=10,
    )
    assert result.epochs["good"] > result.epochs["poor"] >= 1
    # broke: c e²/2 ≤ 0.2 → e ≤ 2
    assert result.epochs["broke"] <= 2


def test_otds_best_response_and_errors():
    assert rtifed.otds_best_response(2.0, 0.5, 0.25, budget=100, max_epochs=10) == pytest.approx(4.0)
    assert rtifed.otds_best_response(100.0, 1.0, 1.0, budget=100, max_epochs=3) == 3.0
    with pytest.raises(ValueError):
        rtifed.otds_best_response(1.0, 1.0, 0.0, budget=1, max_epochs=3)
    with pytest.raises(ValueError):
        rtifed.otds_stackelberg({}, {}, {})
    with pytest.raises(ValueError):
        rtifed.otds_stackelberg({"a": 1.0}, {"b": 1.0}, {"a": 1.0})
