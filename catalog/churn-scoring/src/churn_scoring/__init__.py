"""Nightly churn scoring."""
