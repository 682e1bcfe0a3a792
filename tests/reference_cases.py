"""The authors' reference cases (../shared/nyu/reference) as mammocli objects, read in place."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from mammocli.config import FlipMode
from mammocli.io.exam import ExamSource, ImageSource
from mammocli.views import VIEWS, View


@dataclass
class Reference:
    root: Path

    def json(self, name: str) -> object:
        return json.loads((self.root / "outputs" / name).read_text())

    def npz(self, name: str) -> dict[str, np.ndarray]:
        with np.load(self.root / "outputs" / name) as data:
            return {k: data[k] for k in data.files}

    @property
    def weights(self) -> Path:
        return self.root / "weights"

    @cached_property
    def exam_lists(self) -> dict:
        return json.loads((self.root / "inputs" / "exam_lists.json").read_text())

    def image_path(self, name: str) -> Path:
        folder = "images_big" if name.startswith("big_") else "images"
        return self.root / "inputs" / folder / f"{name}.png"

    def exam(self, entry: dict, exam_id: str) -> ExamSource:
        images = {
            view: tuple(
                ImageSource(path=self.image_path(n), relative=f"{n}.png", view=view)
                for n in entry[view.value]
            )
            for view in VIEWS
        }
        return ExamSource(exam_id=exam_id, folder=self.root / "inputs", images=images,
                          horizontal_flip=FlipMode(entry["horizontal_flip"].lower()))

    def exams(self, key: str = "exams") -> list[ExamSource]:
        return [self.exam(e, f"{key}{i}") for i, e in enumerate(self.exam_lists[key])]

    def single(self) -> ExamSource:
        entry = self.exam_lists["single"]
        view = View(entry["view"])
        source = ImageSource(path=self.image_path(entry["image"]),
                             relative=f"{entry['image']}.png", view=view)
        return ExamSource(exam_id="single", folder=self.root / "inputs",
                          images={v: ((source,) if v is view else ()) for v in VIEWS},
                          horizontal_flip=FlipMode.NO)
