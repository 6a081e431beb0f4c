"""Customers per churn label in the environment's customer_features."""

import pandas as pd


def run(inputs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    features = inputs["customer_features"]
    counts = features.groupby("churned").size()
    return pd.DataFrame({"churned": counts.index.astype(bool), "customers": counts.to_numpy()})
