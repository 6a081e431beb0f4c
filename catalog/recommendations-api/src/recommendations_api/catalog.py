"""The product catalog the service ranks, and a deterministic scoring function."""

from __future__ import annotations

import hashlib

PRODUCTS: dict[str, str] = {
    "p-100": "running shoes",
    "p-101": "trail socks",
    "p-102": "water bottle",
    "p-103": "rain jacket",
    "p-104": "head lamp",
    "p-105": "day pack",
    "p-106": "energy bars",
    "p-107": "sun glasses",
}


def score(customer_id: str, product_id: str) -> float:
    """A stable affinity in [0, 1): the same customer always sees the same ranking."""
    digest = hashlib.sha256(f"{customer_id}:{product_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def rank(customer_id: str, limit: int) -> list[tuple[str, float]]:
    scored = sorted(((pid, score(customer_id, pid)) for pid in PRODUCTS), key=lambda x: x[1], reverse=True)
    return scored[:limit]
