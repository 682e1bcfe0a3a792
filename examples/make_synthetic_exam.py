"""Make a synthetic, non-patient four-view exam (16-bit PNGs) to try mammocli on.

    python examples/make_synthetic_exam.py examples/synthetic_exam
    mammocli predict examples/synthetic_exam

The phantoms are breast-shaped textured shapes, not mammograms: the model's outputs on them
mean nothing. They exercise the whole pipeline (crop, centre, heatmaps, both models).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mammocli.synthetic.phantoms import write_exam


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where to write L_CC.png, R_CC.png, ...")
    parser.add_argument("--height", type=int, default=3328, help="image height (authors': 3328)")
    parser.add_argument("--width", type=int, default=2560, help="image width (authors': 2560)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_exam(args.folder, shape=(args.height, args.width), seed=args.seed)
    print(f"wrote a synthetic four-view exam to {args.folder}")


if __name__ == "__main__":
    main()
