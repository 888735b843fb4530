"""A small batch job whose memory peaks where you might not expect: the bundled demo.

It simulates a day of sensor readings, cleans them, and computes per-sensor statistics. Each
arithmetic step on a whole array makes a full-size copy, and `main` keeps the raw data alive while
the cleaned copy is summarized: at the peak three 150 MiB arrays are alive at once, made by three
different lines. `fil-profile run examples/demo_job.py` shows which.
"""
import sys

import numpy as np

SENSORS = 200
READINGS = 100_000 if len(sys.argv) < 2 else int(sys.argv[1])


def load_readings(rng):
    # float64: 200 x 100,000 x 8 bytes = 160 MB
    return rng.normal(20.0, 5.0, size=(SENSORS, READINGS))


def normalize(raw):
    mean = raw.mean(axis=1, keepdims=True)
    std = raw.std(axis=1, keepdims=True)
    centered = raw - mean           # a second 160 MB array
    return centered / std           # and a third, while the others are alive


def summarize(clean):
    return {
        "min": clean.min(axis=1),
        "max": clean.max(axis=1),
        "outliers": (np.abs(clean) > 3).sum(axis=1),
    }


def main():
    rng = np.random.default_rng(42)
    raw = load_readings(rng)
    clean = normalize(raw)
    stats = summarize(clean)
    print("sensors with outliers:", int((stats["outliers"] > 0).sum()))


if __name__ == "__main__":
    main()
