"""Real data for tests and the demo: scikit-learn's bundled handwritten digits as PNG files + manifests.

Layout written under OUT:
  images/d0000.png ...            1,797 real 8x8 scans (upscaled later by the recipe's transform)
  train.csv, test.csv             seeded split of all samples
  sample/forget.csv, retain.csv   a random share of train to forget; a small retain slice of the rest
  class{K}/forget.csv, retain.csv every train sample of class K; a small retain slice of the others
  class{K}/test.csv               test samples of the other classes (what class-wise test accuracy means)
"""

from __future__ import annotations

import csv
from pathlib import Path

LABELS = [str(d) for d in range(10)]


def _write_manifest(path: Path, rows: list[tuple[str, int]], image_dir: str = "../images") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "path", "label"])
        for sample_id, label in rows:
            writer.writerow([sample_id, f"{image_dir}/{sample_id}.png", label])


def build_digits(out_dir: str | Path, seed: int = 0, forget_share: float = 0.1, retain_share: float = 0.1,
                 test_share: float = 0.2, forget_class: int = 7) -> Path:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    out = Path(out_dir)
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    rows = []
    for index, (pixels, label) in enumerate(zip(digits.images, digits.target)):
        sample_id = f"d{index:04d}"
        png = images_dir / f"{sample_id}.png"
        if not png.exists():
            Image.fromarray((pixels * (255.0 / 16.0)).round().astype(np.uint8), mode="L").save(png)
        rows.append((sample_id, int(label)))

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(rows))
    n_test = int(round(test_share * len(rows)))
    test = [rows[i] for i in sorted(order[:n_test])]
    train = [rows[i] for i in sorted(order[n_test:])]
    _write_manifest(out / "train.csv", train, "images")
    _write_manifest(out / "test.csv", test, "images")

    def split(forget_mask: np.ndarray) -> tuple[list, list]:
        forget = [r for r, f in zip(train, forget_mask) if f]
        rest = [r for r, f in zip(train, forget_mask) if not f]
        n_retain = max(1, int(round(retain_share * len(train))))
        retain = [rest[i] for i in sorted(rng.choice(len(rest), size=min(n_retain, len(rest)), replace=False))]
        return forget, retain

    sample_mask = np.zeros(len(train), dtype=bool)
    sample_mask[rng.choice(len(train), size=int(round(forget_share * len(train))), replace=False)] = True
    forget, retain = split(sample_mask)
    _write_manifest(out / "sample" / "forget.csv", forget)
    _write_manifest(out / "sample" / "retain.csv", retain)

    class_dir = out / f"class{forget_class}"
    forget, retain = split(np.array([label == forget_class for _, label in train]))
    _write_manifest(class_dir / "forget.csv", forget)
    _write_manifest(class_dir / "retain.csv", retain)
    _write_manifest(class_dir / "test.csv", [r for r in test if r[1] != forget_class])
    return out
