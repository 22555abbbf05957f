"""Certificates minted per second, for each key algorithm in the contract. Prints figures; asserts nothing.

.venv/bin/python bench/bench_pki.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

from valkey_operator.api.schema import KEY_ALGORITHMS
from valkey_operator.pki.issue import LeafRequest, issue_leaf, mint_ca


def measure(algorithm: str, seconds: float) -> tuple[int, float]:
    now = datetime.now(UTC)
    ca = mint_ca("bench CA", now, timedelta(days=3650), algorithm)
    request = LeafRequest(
        common_name="cache.apps.svc",
        dns_names=(*tuple(f"cache-{i}.cache-headless.apps.svc" for i in range(9)), "localhost"),
        key_algorithm=algorithm,
    )
    count, start = 0, time.perf_counter()
    while count < 2 or time.perf_counter() - start < seconds:
        issue_leaf(ca, request, now)
        count += 1
    return count, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0, help="time spent per algorithm")
    args = parser.parse_args()
    print(f"{'algorithm':<12} {'certs':>7} {'seconds':>8} {'certs/s':>9} {'ms/cert':>8}")
    for algorithm in KEY_ALGORITHMS:
        count, elapsed = measure(algorithm, args.seconds)
        print(f"{algorithm:<12} {count:>7} {elapsed:>8.2f} {count / elapsed:>9.1f} {1000 * elapsed / count:>8.2f}")


if __name__ == "__main__":
    main()
