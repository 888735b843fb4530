"""Millions of small Python objects: pure-Python CSV parsing of generated text.

Measures the cost of tracking many small, short- and long-lived allocations (str, int, float, tuple, dict, list):
the allocation pattern of everyday data wrangling without numpy.
"""

import random

from _common import scaled

CITIES = ["Lisbon", "Oslo", "Lima", "Pune", "Accra", "Quito", "Hanoi", "Perth", "Cork", "Kyiv", "Fez", "Nice"]


def generate(rows, rng):
    lines = ["id,city,year,amount,quantity,flag"]
    for i in range(rows):
        lines.append(
            f"{i},{rng.choice(CITIES)},{rng.randrange(1990, 2025)},{rng.random() * 1000:.2f},"
            f"{rng.randrange(1, 50)},{'yes' if rng.random() < 0.3 else 'no'}"
        )
    return "\n".join(lines) + "\n"


def parse(text):
    lines = text.splitlines()
    header = lines[0].split(",")
    records = []
    for line in lines[1:]:
        fields = line.split(",")
        record = dict(zip(header, fields))
        record["id"] = int(record["id"])
        record["year"] = int(record["year"])
        record["amount"] = float(record["amount"])
        record["quantity"] = int(record["quantity"])
        record["flag"] = record["flag"] == "yes"
        records.append(record)
    return records


def summarize(records):
    by_city = {}
    for r in records:
        by_city.setdefault((r["city"], r["year"] // 10 * 10), []).append((r["id"], r["amount"] * r["quantity"]))
    totals = sorted(((key, len(v), round(sum(x for _, x in v), 2)) for key, v in by_city.items()), reverse=True)
    flagged = [(r["city"], r["id"]) for r in records if r["flag"]]
    return totals, len(flagged)


def main():
    rng = random.Random(42)
    text = generate(scaled(600_000), rng)
    records = parse(text)
    totals, flagged = summarize(records)
    print(len(records), flagged, totals[0])


if __name__ == "__main__":
    main()
