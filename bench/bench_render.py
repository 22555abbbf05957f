"""`valkey-operator render` wall time and peak memory for 1 and for 100 resources. Prints figures.

Each measurement runs in a fresh interpreter, so peak RSS (ru_maxrss) belongs to that render alone.

    .venv/bin/python bench/bench_render.py [--counts 1 100]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def documents(count: int) -> str:
    base = yaml.safe_load((ROOT / "examples" / "valkeycluster.yaml").read_text())
    docs = []
    for i in range(count):
        doc = yaml.safe_load(yaml.safe_dump(base))
        doc["metadata"]["name"] = f"cache-{i}"
        docs.append(doc)
    return yaml.safe_dump_all(docs)


CHILD = (
    "import resource, sys\n"
    "from valkey_operator.cli import main\n"
    "code = main(['render', '-f', sys.argv[1]])\n"
    "sys.stderr.write(f'maxrss={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n')\n"
    "raise SystemExit(code)\n"
)


def measure(count: int) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp, "in.yaml")
        source.write_text(documents(count))
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD, str(source)], capture_output=True, check=True)
        elapsed = time.perf_counter() - start
        peak_kib = int(out.stderr.decode().rsplit("maxrss=", 1)[1])
        objects = out.stdout.count(b"\napiVersion:") + out.stdout.startswith(b"apiVersion:")
        return elapsed, peak_kib / 1024, objects


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 100])
    args = parser.parse_args()
    print(f"{'resources':>9} {'objects':>8} {'wall s':>8} {'ms/resource':>12} {'peak RSS MiB':>13}")
    for count in args.counts:
        elapsed, peak, objects = measure(count)
        print(f"{count:>9} {objects:>8} {elapsed:>8.2f} {1000 * elapsed / count:>12.1f} {peak:>13.1f}")


if __name__ == "__main__":
    main()
