"""The drift statistics on data whose answer is known: the same population, and shifted ones."""

from __future__ import annotations

import base64

import numpy as np
import pandas as pd
import pytest

from platform_assets.kinds.model.drift import feature_drift, markdown_table, plot, psi


def population(rows: int, seed: int, shift: float = 0.0, premium_share: float = 0.3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "spend": rng.gamma(2.0, 50.0, rows) * (1 + shift),
        "orders": rng.poisson(4 + 4 * shift, rows).astype(float),
        "plan": rng.choice(["basic", "premium"], rows, p=[1 - premium_share, premium_share]),
        "opt_in": rng.random(rows) < 0.5,
    })


FEATURES = ["spend", "orders", "plan", "opt_in"]


def test_the_same_population_does_not_drift() -> None:
    results = feature_drift(population(1500, 1), population(2000, 2), FEATURES, psi_max=0.2, significance=0.01)

    assert [(r.feature, r.test) for r in results] == [("spend", "ks"), ("orders", "ks"), ("plan", "chi2"),
                                                      ("opt_in", "chi2")]
    assert not any(r.drifted for r in results), markdown_table(results)
    assert all(r.psi < 0.05 for r in results)


def test_shifted_numbers_and_a_changed_mix_drift_feature_by_feature() -> None:
    served = population(2000, 3, shift=1.0, premium_share=0.8)

    results = {r.feature: r for r in feature_drift(population(1500, 1), served, FEATURES, 0.2, 0.01)}

    assert {name for name, r in results.items() if r.drifted} == {"spend", "orders", "plan"}
    assert results["spend"].p_value < 1e-10 and results["spend"].psi > 0.5
    assert not results["opt_in"].drifted


def test_a_small_significant_shift_is_not_drift_and_json_integers_are_numbers() -> None:
    reference = population(5000, 1)
    served = population(5000, 4, shift=0.05).assign(orders=lambda f: f["orders"].astype(int).astype(object))

    results = {r.feature: r for r in feature_drift(reference, served, FEATURES, 0.2, 0.01)}

    assert results["spend"].p_value < 0.01 and results["spend"].psi < 0.2 and not results["spend"].drifted
    assert results["orders"].test == "ks"


@pytest.mark.parametrize(("expected", "actual", "value"), [
    ([50, 50], [50, 50], 0.0),
    ([50, 50], [90, 10], 0.4 * np.log(1.8) - 0.4 * np.log(0.2)),
])
def test_psi(expected: list[int], actual: list[int], value: float) -> None:
    assert psi(expected, actual) == pytest.approx(value)


def test_the_plot_is_a_png_of_the_most_shifted_features() -> None:
    reference, served = population(500, 1), population(500, 2, shift=1.0)
    image = plot(reference, served, feature_drift(reference, served, FEATURES, 0.2, 0.01), "churn-model in prod")
    assert base64.b64decode(image).startswith(b"\x89PNG")
