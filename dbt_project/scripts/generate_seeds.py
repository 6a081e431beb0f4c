"""Generate the demo seeds of the dbt project: raw_customers, raw_orders, raw_product_events.

Deterministic: standard library only, one fixed random seed, rows written in a fixed order with
"\\n" line endings, so rerunning it yields byte-identical CSVs. The committed files in
``dbt_project/seeds/`` are its output; regenerate them with

    python dbt_project/scripts/generate_seeds.py            # writes dbt_project/seeds/
    python dbt_project/scripts/generate_seeds.py --out DIR  # writes elsewhere (tests)

The data is an online shop observed up to AS_OF (2025-06-30, the default of the dbt var
``as_of_date``): customers sign up over the two years before it (more of them recently), order as
a Poisson process whose rate varies widely from customer to customer (heavy tail), some of them
stop ordering at a random date (churn), and browse products in sessions over the last 180 days.
Nothing happens before a customer's signup or after AS_OF.
"""

from __future__ import annotations

import argparse
import csv
import math
import random
from datetime import date, datetime, timedelta
from pathlib import Path

SEED = 20250630
AS_OF = date(2025, 6, 30)
HISTORY_DAYS = 730
EVENT_WINDOW_DAYS = 180
N_CUSTOMERS = 2000
N_PRODUCTS = 40
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "seeds"

COUNTRIES = {"US": 0.42, "GB": 0.16, "DE": 0.13, "FR": 0.10, "BR": 0.07, "IN": 0.07, "CA": 0.05}
PLANS = {"free": 0.55, "basic": 0.30, "pro": 0.15}
# Order rate and basket size by plan: paying customers order more often and spend more.
PLAN_RATE = {"free": 0.7, "basic": 1.0, "pro": 1.6}
PLAN_BASKET = {"free": 0.85, "basic": 1.0, "pro": 1.35}
BASE_RATE_PER_DAY = 0.017  # median orders per day of a basic customer
RATE_SIGMA = 0.6  # lognormal spread of the order rate: a few heavy buyers, many occasional ones
ORDER_REGULARITY = 4.0  # gamma shape of the gaps between orders (1 would be a Poisson process)
CHURN_PROBABILITY = 0.10  # customers who stop ordering at some date after signup
NEVER_ORDER_PROBABILITY = 0.03
SESSIONS_PER_ORDER = 2.9  # browsing sessions per expected order
STATUS_RECENT = {"placed": 0.55, "shipped": 0.40, "cancelled": 0.05}  # orders of the last 5 days
STATUS_SETTLED = {"shipped": 0.835, "returned": 0.09, "cancelled": 0.07, "placed": 0.005}


def pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def generate(rng: random.Random) -> tuple[list[list], list[list], list[list]]:
    customers: list[list] = []
    orders: list[tuple] = []
    events: list[tuple] = []
    product_weights = [1.0 / (i**0.9) for i in range(1, N_PRODUCTS + 1)]
    # Popularity rank is not the product id: shuffle which id gets which weight.
    product_ids = list(range(1, N_PRODUCTS + 1))
    rng.shuffle(product_ids)
    as_of_end = datetime.combine(AS_OF, datetime.min.time()) + timedelta(days=1)  # exclusive bound

    for customer_id in range(1, N_CUSTOMERS + 1):
        # Signups grow over time: density rises towards AS_OF.
        days_before = int(HISTORY_DAYS * (1.0 - rng.random() ** 0.8))
        signup = AS_OF - timedelta(days=min(days_before, HISTORY_DAYS - 1))
        country = pick(rng, COUNTRIES)
        plan = pick(rng, PLANS)
        opt_in = rng.random() < (0.55 if plan != "free" else 0.35)
        customers.append([customer_id, signup.isoformat(), country, plan, "true" if opt_in else "false"])

        rate = BASE_RATE_PER_DAY * PLAN_RATE[plan] * rng.lognormvariate(0.0, RATE_SIGMA)
        active_end = AS_OF
        if rng.random() < CHURN_PROBABILITY:
            active_end = signup + timedelta(days=int(rng.random() * (AS_OF - signup).days))
        never_orders = rng.random() < NEVER_ORDER_PROBABILITY

        # Orders: a renewal process (gamma gaps) from signup to active_end; the first one often comes soon.
        if not never_orders:
            t = rng.expovariate(1.0 / 7.0) if rng.random() < 0.6 else rng.expovariate(rate)
            while True:
                order_day = signup + timedelta(days=int(t))
                if order_day > active_end:
                    break
                recent = (AS_OF - order_day).days < 5
                status = pick(rng, STATUS_RECENT if recent else STATUS_SETTLED)
                amount = max(1.0, rng.lognormvariate(math.log(38.0), 0.75) * PLAN_BASKET[plan])
                orders.append((order_day, customer_id, status, f"{amount:.2f}"))
                t += rng.gammavariate(ORDER_REGULARITY, 1.0 / (ORDER_REGULARITY * rate))

        # Browsing sessions over the last EVENT_WINDOW_DAYS, until a little after churning.
        start = datetime.combine(max(signup, AS_OF - timedelta(days=EVENT_WINDOW_DAYS)), datetime.min.time())
        end = min(as_of_end, datetime.combine(active_end, datetime.min.time()) + timedelta(days=21))
        session_rate = rate * SESSIONS_PER_ORDER * 0.6 / 86400.0  # sessions per second
        ts = start + timedelta(seconds=rng.expovariate(session_rate))
        while ts < end:
            viewed = rng.choices(product_ids, weights=product_weights, k=rng.choice((1, 1, 2, 2, 3, 4)))
            t_event = ts
            for product_id in viewed:
                events.append((t_event, customer_id, product_id, "view"))
                t_event += timedelta(seconds=rng.randint(5, 240))
            if rng.random() < 0.3:
                product_id = rng.choice(viewed)
                events.append((t_event, customer_id, product_id, "add_to_cart"))
                if rng.random() < 0.45:
                    t_event += timedelta(seconds=rng.randint(20, 600))
                    events.append((t_event, customer_id, product_id, "purchase"))
            ts += timedelta(seconds=rng.expovariate(session_rate))

    orders.sort(key=lambda o: (o[0], o[1]))
    order_rows = [[i, o[1], o[0].isoformat(), o[2], o[3]] for i, o in enumerate(orders, start=1)]
    # Events of a session that spill past midnight of AS_OF are dropped: nothing after the as-of date.
    events = sorted(e for e in events if e[0] < as_of_end)
    event_rows = [[i, e[1], e[2], e[3], e[0].strftime("%Y-%m-%d %H:%M:%S")] for i, e in enumerate(events, start=1)]
    return customers, order_rows, event_rows


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    customers, orders, events = generate(random.Random(SEED))
    write_csv(args.out / "raw_customers.csv",
              ["customer_id", "signup_date", "country", "plan", "marketing_opt_in"], customers)
    write_csv(args.out / "raw_orders.csv", ["order_id", "customer_id", "order_date", "status", "amount"], orders)
    write_csv(args.out / "raw_product_events.csv",
              ["event_id", "customer_id", "product_id", "event_type", "event_ts"], events)
    print(f"wrote {len(customers)} customers, {len(orders)} orders, {len(events)} events to {args.out}")


if __name__ == "__main__":
    main()
