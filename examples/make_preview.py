"""Remake docs/preview.png, the README's example of `predict --preview`.

    python examples/make_preview.py docs/preview.png

A synthetic four-view exam (phantoms with a bright blob in R-CC, not mammograms) through
`mammocli predict --model gmic --gmic-models 1 --preview` with random GMIC weights (seed 0),
so the picture shows the layout, not a meaningful model output. About 20 s on 2 CPU cores.
The committed copy is shrunk to half size and a 256-colour palette to stay small.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from mammocli.synthetic.phantoms import write_exam, write_random_gmic_weights
from mammocli.views import View


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path, help="the PNG to write, e.g. docs/preview.png")
    parser.add_argument("--scale", type=float, default=0.5, help="shrink factor (default 0.5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        exam = write_exam(root / "demo_exam", shape=(1300, 1000), seed=4,
                          lesion_views=(View.R_CC,))
        weights = write_random_gmic_weights(root / "weights", members=(1,))
        subprocess.run([sys.executable, "-m", "mammocli", "predict", str(exam), "--model", "gmic",
                        "--gmic-models", "1", "--weights-dir", str(weights), "--preview",
                        str(root / "preview"), "-o", str(root / "result.json"), "-q"],
                       check=True)
        with Image.open(root / "preview" / "demo_exam.png") as picture:
            size = (round(picture.width * args.scale), round(picture.height * args.scale))
            small = picture.convert("RGB").resize(size, Image.Resampling.LANCZOS)
        args.target.parent.mkdir(parents=True, exist_ok=True)
        small.quantize(256).save(args.target, optimize=True)
    print(f"wrote {args.target} ({args.target.stat().st_size // 1024} kB)")


if __name__ == "__main__":
    main()
