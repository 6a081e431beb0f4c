"""Whether the inputs a model serves drifted from its training holdout, feature by feature.

Two figures per feature, because each alone misleads:

- a test of "both samples come from one distribution": the two-sample Kolmogorov-Smirnov test for
  numeric features (distribution-free, no binning to choose) and the chi-square test of the
  category counts for the others (booleans and strings). Its p-value says whether a difference is
  real, but with thousands of rows it flags differences too small to matter;
- the population stability index (PSI) over the holdout's deciles (numeric) or categories, the
  usual magnitude measure of credit-risk and ML monitoring (below 0.1 stable, above 0.25 a major
  shift). It says how large a shift is, but on a few hundred rows it is noisy.

A feature drifted when both say so: p-value below `significance` and PSI above `psi_max`.
scipy provides both tests (it comes with scikit-learn already); evidently would add a large
dependency tree and its own report format for the same two tests. numpy, pandas, scipy and
matplotlib are imported inside the functions: only the drift check's step pays for them.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

DECILES = 10
EPSILON = 1e-4  # the share given to an empty bin, so the PSI's logarithm stays finite
MISSING = "<missing>"


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    test: str  # "ks" (numeric) or "chi2" (categorical)
    statistic: float
    p_value: float
    psi: float
    drifted: bool

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "statistic": round(self.statistic, 4), "p_value": float(f"{self.p_value:.3g}"),
                "psi": round(self.psi, 4)}


def feature_drift(reference: pd.DataFrame, served: pd.DataFrame, features: list[str], psi_max: float,
                  significance: float) -> list[FeatureDrift]:
    """One comparison per feature, in `features` order; the served frame's values are coerced to
    the reference's kind (JSON sends integers for float columns, for instance)."""
    results = []
    for feature in features:
        expected, actual = reference[feature], served.get(feature)
        if is_numeric(expected):
            test, statistic, p_value, psi = numeric_drift(expected, actual)
        else:
            test, statistic, p_value, psi = categorical_drift(expected, actual)
        results.append(FeatureDrift(feature, test, statistic, p_value, psi,
                                    p_value < significance and psi > psi_max))
    return results


def is_numeric(series: pd.Series) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def numeric_drift(expected: pd.Series, actual: pd.Series | None) -> tuple[str, float, float, float]:
    """KS statistic and p-value, and the PSI over the reference's deciles."""
    import numpy as np
    import pandas as pd
    from scipy.stats import ks_2samp

    reference = pd.to_numeric(expected, errors="coerce").dropna().to_numpy(dtype=float)
    served = (pd.to_numeric(actual, errors="coerce").dropna().to_numpy(dtype=float)
              if actual is not None else np.array([]))
    if not len(reference) or not len(served):
        return "ks", math.nan, 1.0, 0.0
    test = ks_2samp(reference, served)
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, DECILES + 1)[1:-1]))
    bins = len(edges) + 1
    expected_counts = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=bins)
    actual_counts = np.bincount(np.searchsorted(edges, served, side="right"), minlength=bins)
    return "ks", float(test.statistic), float(test.pvalue), psi(expected_counts, actual_counts)


def categorical_drift(expected: pd.Series, actual: pd.Series | None) -> tuple[str, float, float, float]:
    """Chi-square statistic and p-value of the category counts, and the PSI over the categories."""
    import numpy as np
    import pandas as pd
    from scipy.stats import chi2_contingency

    reference = expected.astype(str).where(expected.notna(), MISSING)
    served = (actual.astype(str).where(actual.notna(), MISSING) if actual is not None
              else pd.Series([], dtype=str))
    if served.empty:
        return "chi2", math.nan, 1.0, 0.0
    categories = sorted(set(reference) | set(served))
    counts = np.array([[int((reference == c).sum()) for c in categories],
                       [int((served == c).sum()) for c in categories]])
    if len(categories) < 2:
        return "chi2", 0.0, 1.0, 0.0
    test = chi2_contingency(counts)
    return "chi2", float(test.statistic), float(test.pvalue), psi(counts[0], counts[1])


def psi(expected_counts: Any, actual_counts: Any) -> float:
    """The sum over the bins of (actual share - expected share) * ln(actual share / expected share)."""
    import numpy as np

    expected = np.maximum(np.asarray(expected_counts, dtype=float) / max(np.sum(expected_counts), 1), EPSILON)
    actual = np.maximum(np.asarray(actual_counts, dtype=float) / max(np.sum(actual_counts), 1), EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def markdown_table(results: list[FeatureDrift]) -> str:
    rows = [f"| {r.feature} | {r.test} | {r.statistic:.4f} | {r.p_value:.3g} | {r.psi:.4f} | "
            f"{'**drifted**' if r.drifted else 'no'} |" for r in results]
    return "\n".join(["| feature | test | statistic | p-value | PSI | drifted |", "|---|---|---|---|---|---|", *rows])


def plot(reference: pd.DataFrame, served: pd.DataFrame, results: list[FeatureDrift], title: str,
         most: int = 6) -> str:
    """The `most` features with the largest PSI, holdout against served, as a base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = sorted(results, key=lambda r: -r.psi)[:most]
    columns = min(3, len(shown)) or 1
    rows = math.ceil(len(shown) / columns) or 1
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows), dpi=80, squeeze=False)
    for axis, result in zip(axes.flat, shown, strict=False):
        _draw(axis, reference[result.feature], served.get(result.feature), result)
    for axis in list(axes.flat)[len(shown):]:
        axis.axis("off")
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _draw(axis: Any, expected: pd.Series, actual: pd.Series | None, result: FeatureDrift) -> None:
    import pandas as pd

    actual = actual if actual is not None else pd.Series([], dtype=float)
    if result.test == "ks":
        values = [pd.to_numeric(s, errors="coerce").dropna() for s in (expected, actual)]
        axis.hist(values, bins=20, density=True, label=["holdout", "served"], color=["#4C78A8", "#F58518"])
    else:
        shares = pd.DataFrame({"holdout": expected.astype(str).value_counts(normalize=True),
                               "served": actual.astype(str).value_counts(normalize=True)}).fillna(0)
        shares.plot.bar(ax=axis, color=["#4C78A8", "#F58518"], legend=False, rot=0)
    axis.set_title(f"{result.feature}: PSI {result.psi:.2f}" + (" (drifted)" if result.drifted else ""), fontsize=8)
    axis.tick_params(labelsize=6)
    axis.legend(fontsize=6)
