import pandas as pd

from {{package}}.job import run


def test_counts_customers_per_label() -> None:
    features = pd.DataFrame({"customer_id": ["a", "b", "c"], "churned": [True, False, False]})
    counts = run({"customer_features": features})
    assert dict(zip(counts["churned"], counts["customers"], strict=True)) == {False: 2, True: 1}
