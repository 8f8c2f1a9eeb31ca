"""Seconds to validate a 100,000-row manifest (every file checked, labels parsed, ids deduplicated).

Run: python benchmarks/manifest_validation.py [--rows 100000]
"""

import argparse
import tempfile
import time
from pathlib import Path

from PIL import Image

from orthograd_cli.data.manifest import read_manifest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        images = root / "images"
        images.mkdir()
        for i in range(1000):  # real files; rows reuse them under unique ids
            Image.new("L", (8, 8), color=i % 256).save(images / f"{i}.png")
        with open(root / "big.csv", "w") as handle:
            handle.write("id,path,label\n")
            for row in range(args.rows):
                handle.write(f"s{row},images/{row % 1000}.png,{row % 10}\n")
        start = time.perf_counter()
        manifest = read_manifest(root / "big.csv", num_classes=10)
        elapsed = time.perf_counter() - start
    print(f"validated {len(manifest):,} rows in {elapsed:.2f} s ({len(manifest) / elapsed:,.0f} rows/s)")


if __name__ == "__main__":
    main()
