"""A pandas ETL: write a generated CSV, read_csv it, groupby, merge.

Measures the profiler on a typical data-processing job: a mix of large column buffers (numpy), many mid-sized
allocations in the C parser, and Python-level glue. The CSV goes into a fresh temporary directory.
"""

import os
import tempfile

import numpy as np
import pandas as pd

from _common import scaled


def make_csv(path, rows, rng):
    frame = pd.DataFrame(
        {
            "order_id": np.arange(rows),
            "customer_id": rng.integers(0, 50_000, rows),
            "product_id": rng.integers(0, 2_000, rows),
            "quantity": rng.integers(1, 20, rows),
            "unit_price": np.round(rng.random(rows) * 100, 2),
            "region": rng.choice(np.array(["north", "south", "east", "west", "center"]), rows),
        }
    )
    frame.to_csv(path, index=False)


def etl(path, rng):
    orders = pd.read_csv(path)
    orders["revenue"] = orders["quantity"] * orders["unit_price"]
    products = pd.DataFrame(
        {
            "product_id": np.arange(2_000),
            "category": rng.choice(np.array(["toys", "food", "tools", "books", "garden", "music"]), 2_000),
        }
    )
    enriched = orders.merge(products, on="product_id", how="left")
    by_customer = enriched.groupby("customer_id").agg(revenue=("revenue", "sum"), orders=("order_id", "count"))
    by_region = enriched.groupby(["region", "category"])["revenue"].agg(["sum", "mean", "max"])
    top = by_customer.sort_values("revenue", ascending=False).head(100)
    joined = top.merge(enriched, left_index=True, right_on="customer_id")
    return len(enriched), round(float(by_region["sum"].sum()), 2), len(joined)


def main():
    rng = np.random.default_rng(42)
    rows = scaled(1_500_000, minimum=1000)
    with tempfile.TemporaryDirectory(prefix="filbench-") as tmp:
        path = os.path.join(tmp, "orders.csv")
        make_csv(path, rows, rng)
        print(*etl(path, rng))


if __name__ == "__main__":
    main()
