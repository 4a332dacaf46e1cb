"""Build the bundled chest X-ray set ``data/xray/kermany`` from the Kermany train split.

Run from the repository root (it is how the bundled files were made)::

    python scripts/make_xray_subset.py --source ../shared/data/xray/kermany/train

Steps: hash every source file and drop exact duplicates (a duplicate under a second name
would otherwise be two "records" of one image); group files by patient with
``patient_id_from_filename``; shuffle patients with ``--seed`` and take whole patients
while a class stays within ``--per-class`` images (default: all of them); convert to
8-bit grey, area-resize to ``--size`` and write PNGs under the original file stem
(which carries the patient id), plus ``MANIFEST.csv`` (path,label,patient_id,
source_sha256), usable as a labels CSV.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from medgan_core.data.xray import patient_id_from_filename
from medgan_core.io_utils import atomic_write_bytes, atomic_write_text

logger = logging.getLogger("make_xray_subset")

CLASSES = ("NORMAL", "PNEUMONIA")


def _unique_files(source: Path) -> dict[str, list[tuple[Path, str]]]:
    """Per class: (file, sha256) with exact duplicates removed, first sorted name kept."""
    seen: dict[str, tuple[str, Path]] = {}
    kept: dict[str, list[tuple[Path, str]]] = {c: [] for c in CLASSES}
    conflicts: set[str] = set()
    for name in CLASSES:
        for path in sorted((source / name).glob("*.jp*g")):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest in seen:
                if seen[digest][0] != name:
                    conflicts.add(digest)  # same picture under two labels: label unknown
                logger.info("duplicate %s of %s dropped", path.name, seen[digest][1].name)
                continue
            seen[digest] = (name, path)
            kept[name].append((path, digest))
    for name in CLASSES:
        kept[name] = [(p, d) for p, d in kept[name] if d not in conflicts]
    return kept


def _choose_patients(
    files: list[tuple[Path, str]], per_class: int, rng: np.random.Generator
) -> list[tuple[Path, str, str]]:
    """Whole patients, in seeded random order, while the class stays within budget."""
    by_patient: dict[str, list[tuple[Path, str]]] = defaultdict(list)
    for path, digest in files:
        by_patient[patient_id_from_filename(path.name) or path.stem].append((path, digest))
    chosen: list[tuple[Path, str, str]] = []
    for pid in rng.permutation(sorted(by_patient)):
        group = by_patient[str(pid)]
        if len(chosen) + len(group) <= per_class:
            chosen.extend((path, digest, str(pid)) for path, digest in group)
    return sorted(chosen)


def _png(path: Path, size: int) -> bytes:
    with Image.open(path) as image:
        grey = image.convert("L").resize((size, size), Image.Resampling.BOX)
    buffer = io.BytesIO()
    grey.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("../shared/data/xray/kermany/train"))
    parser.add_argument("--dest", type=Path, default=Path("data/xray/kermany"))
    parser.add_argument("--per-class", type=int, default=0,
                        help="at most this many images per class, whole patients only; 0 (default): all")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    rng = np.random.default_rng(args.seed)
    manifest = ["path,label,patient_id,source_sha256"]
    for name, files in _unique_files(args.source).items():
        out = args.dest / name
        for stale in out.glob("*.png"):  # regenerate, never mix two subsets
            stale.unlink()
        chosen = _choose_patients(files, args.per_class or len(files), rng)
        for path, digest, pid in chosen:
            atomic_write_bytes(out / f"{path.stem}.png", _png(path, args.size))
            manifest.append(f"{name}/{path.stem}.png,{name},{pid},{digest}")
        logger.info("%s: %d images of %d patients", name, len(chosen), len({c[2] for c in chosen}))
    atomic_write_text(args.dest / "MANIFEST.csv", "\n".join(manifest) + "\n")


if __name__ == "__main__":
    main()
