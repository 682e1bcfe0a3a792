"""The model-family seam: the registry, the DMV-CNN's weight table, and a second family (a toy
shaped like GMIC: its own window size, no heatmaps, per-image outputs, per breast the mean of
the breast's images) plugged in through the registry alone."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from dicom_factory import write_exam as write_dicom_exam

from mammocli.api import ModelRequest, RunOptions, predict_many
from mammocli.config import PipelineConfig
from mammocli.errors import ConfigError
from mammocli.families import FAMILIES, get_family
from mammocli.families.dmv_cnn import DmvCnnModels
from mammocli.inference.family import ImageOutput, Inference, Locate, ModelFamily
from mammocli.inference.predictor import Predictor
from mammocli.inference.randomness import ExamRandomness
from mammocli.io.dicom.options import DicomOptions
from mammocli.io.discover import discover_exams
from mammocli.outputs.schema import BreastPredictions, PredictionResult, Probabilities
from mammocli.outputs.sinks import JsonFileSink, Outputs, plan_exams
from mammocli.outputs.weights_used import WeightsUsed
from mammocli.synthetic.phantoms import write_exam
from mammocli.views import VIEWS, Angle, Side
from mammocli.vocabulary import (
    PATCH_WEIGHTS,
    WEIGHT_FILES,
    Export,
    Family,
    ModelKind,
    Precision,
    Variant,
)
from mammocli.weights.registry import builtin_registry

SMALL = PipelineConfig.small(tta=0)


def test_the_registry_knows_the_dmv_cnn_and_names_the_known_families() -> None:
    assert get_family("dmv-cnn") is FAMILIES[Family.DMV_CNN]
    assert get_family("gmic") is FAMILIES[Family.GMIC]
    with pytest.raises(ConfigError, match="unknown model family 'lunit'") as caught:
        get_family("lunit")
    assert caught.value.hint == "known families: dmv-cnn, gmic"


def test_dmv_cnn_weight_files_come_from_the_one_table() -> None:
    family = get_family(Family.DMV_CNN)
    view, image = ModelKind.VIEW_WISE, ModelKind.IMAGE_WISE
    assert family.weight_files(view, (Variant.IMAGE_ONLY,)) == ["sample_image_model.p"]
    assert family.weight_files(view, (Variant.IMAGE_ONLY,), frozenset({Export.HEATMAPS})) == [
        PATCH_WEIGHTS, "sample_image_model.p"]
    assert family.weight_files(image, family.variants) == [
        PATCH_WEIGHTS, "ImageOnly__ModeImage_weights.p", "ImageHeatmaps__ModeImage_weights.p"]
    assert family.weight_files(view, (), frozenset({Export.HEATMAPS})) == [PATCH_WEIGHTS]
    # Every file of the table is a registry entry (downloadable, verified by its hash).
    registered = {e.name for e in builtin_registry().weights}
    assert {PATCH_WEIGHTS, *WEIGHT_FILES.values()} == registered


def test_training_names_its_output_from_the_same_table(tmp_path: Path) -> None:
    from mammocli.train.config import parse_config
    from mammocli.train.tasks import official_name

    for kind in get_family(Family.DMV_CNN).kinds:
        for variant, spelt in ((Variant.IMAGE_ONLY, "image-only"),
                               (Variant.IMAGE_AND_HEATMAPS, "image_and_heatmaps")):
            text = (f"task: breast\ndata: {{train: m.csv}}\noutput_dir: o\n"
                    f"model: {{kind: {kind.value}, variant: {spelt}}}\n")
            config = parse_config(text, "train.yaml", tmp_path)
            assert config.model.kind is kind and config.model.variant is variant
            assert official_name(config) == WEIGHT_FILES[(Family.DMV_CNN, kind, variant)]


# --- a second family, shaped like GMIC -------------------------------------------------------

WINDOW = (64, 48)  # one window for every view, unlike the DMV-CNN's CC/MLO sizes


@dataclass
class ToyModels:
    """Per image: (mean, max) of the pixels scaled to [0, 1]; per breast: mean of its images."""

    family: ToyFamily
    kind: ModelKind
    device: torch.device
    weights: list[WeightsUsed]
    precision: Precision = Precision.FP32
    seen: list[dict[str, object]] = field(default_factory=list)

    def infer(self, prepared, rng, config, exports) -> Inference:  # type: ignore[no-untyped-def]
        images, sides = {}, {Side.LEFT: [], Side.RIGHT: []}
        for view, prepared_images in prepared.items():
            outs = []
            for img in prepared_images:
                scaled = img.pixels / 65535.0
                probs = Probabilities(benign=float(scaled.mean()), malignant=float(scaled.max()))
                sides[view.side].append(probs)
                outs.append(ImageOutput(predictions={Variant.IMAGE_ONLY: probs},
                                        outputs={"boxes": [[0, 0, 8, 8]], "view": view.value}))
                self.seen.append({"view": view, "best_center": img.best_center})
            images[view] = outs

        def mean(ps: list[Probabilities]) -> Probabilities:
            return Probabilities(benign=float(np.mean([p.benign for p in ps])),
                                 malignant=float(np.mean([p.malignant for p in ps])))

        breast = BreastPredictions(left=mean(sides[Side.LEFT]), right=mean(sides[Side.RIGHT]))
        return Inference({Variant.IMAGE_ONLY: breast}, Variant.IMAGE_ONLY, images,
                         warnings=["toy: not a real model"], outputs={"ensemble": 1})


class ToyFamily:
    name = Family.DMV_CNN  # the enum is closed: the toy stands in under a known name
    kinds = (ModelKind.IMAGE_WISE,)
    variants = (Variant.IMAGE_ONLY,)
    exports: frozenset[Export] = frozenset()

    def weight_files(self, kind, variants, exports=frozenset()) -> list[str]:  # type: ignore[no-untyped-def]
        return ["toy_model.p"]

    def preparation(self, config: PipelineConfig) -> PipelineConfig:
        return config.with_(cc_window=WINDOW, mlo_window=WINDOW)

    def load(self, kind, variants, locate: Locate, device, config, *,  # type: ignore[no-untyped-def]
             precision=Precision.FP32, exports=frozenset()) -> ToyModels:
        path = locate("toy_model.p")
        return ToyModels(self, kind, device, [WeightsUsed(name="toy_model.p", sha256="0" * 64,
                                                          path=str(path))])


def test_a_second_family_plugs_in_through_the_registry(tmp_path: Path, monkeypatch) -> None:
    toy: ModelFamily = ToyFamily()
    monkeypatch.setitem(FAMILIES, Family.DMV_CNN, toy)
    located: list[str] = []

    def locate(name: str) -> Path:
        located.append(name)
        return tmp_path / name

    root = tmp_path / "root"
    for i in range(2):
        write_exam(root / f"e{i}", shape=(200, 150), seed=i)
    planned, _ = plan_exams(discover_exams(root), root)
    target = tmp_path / "out.jsonl"
    outputs = Outputs.open([JsonFileSink(target, False, overwrite=False, resume=False)], planned)
    report = predict_many(planned, ModelRequest(locate=locate), RunOptions(config=SMALL),
                          outputs)
    assert report.exit_code == 0 and report.written == 2
    assert located == ["toy_model.p"]  # what the family declared, located once
    results = [PredictionResult.model_validate(json.loads(line))
               for line in target.read_text().splitlines()]
    for result in results:
        assert result.model is ModelKind.IMAGE_WISE and result.tta == 0
        assert result.outputs == {"ensemble": 1}
        assert "toy: not a real model" in result.warnings
        assert [w.name for w in result.weights] == ["toy_model.p"]
        per_image = {v: result.views[v][0] for v in VIEWS}
        assert per_image[VIEWS[0]].outputs == {"boxes": [[0, 0, 8, 8]], "view": "L-CC"}
        left = [per_image[v].predictions[Variant.IMAGE_ONLY] for v in VIEWS  # type: ignore[index]
                if v.side is Side.LEFT]
        assert result.primary.left.malignant == pytest.approx(
            (left[0].malignant + left[1].malignant) / 2)


def test_preparation_runs_with_the_familys_window() -> None:
    toy = ToyFamily()
    models = toy.load(ModelKind.IMAGE_WISE, (), lambda n: Path(n), torch.device("cpu"), SMALL)
    predictor = Predictor(models, SMALL)  # type: ignore[arg-type]
    assert predictor.preparer.config.window(Angle.CC) == WINDOW
    assert predictor.preparer.config.window(Angle.MLO) == WINDOW
    with pytest.raises(ConfigError, match="cannot export heatmaps"):
        Predictor(models, SMALL, exports=[Export.HEATMAPS])  # type: ignore[arg-type]


def test_dmv_cnn_models_are_the_familys(random_weights: Path) -> None:
    family = get_family(Family.DMV_CNN)
    models = family.load(ModelKind.VIEW_WISE, (Variant.IMAGE_ONLY,),
                         lambda name: random_weights / name, torch.device("cpu"), SMALL)
    assert isinstance(models, DmvCnnModels) and models.family is family
    assert models.heatmap_engine is None and [w.name for w in models.weights] == [
        "sample_image_model.p"]
    with pytest.raises(ConfigError, match="unknown variant"):
        DmvCnnModels.load(ModelKind.VIEW_WISE, ("image",), lambda n: random_weights / n,
                          torch.device("cpu"), SMALL)


# --- data flows one way ----------------------------------------------------------------------

def test_uids_are_captured_at_discovery_and_never_read_again(tmp_path: Path,
                                                             monkeypatch) -> None:
    written = write_dicom_exam(tmp_path / "study", study_uid="1.2.826.0.1.3680043.2.1143.7")
    plain = discover_exams(tmp_path / "study")
    assert all(s.uids is None for e in plain for ss in e.images.values() for s in ss)
    [exam] = discover_exams(tmp_path / "study", options=DicomOptions(include_uids=True))
    sources = [s for ss in exam.images.values() for s in ss]
    assert {s.uids.study for s in sources} == {"1.2.826.0.1.3680043.2.1143.7"}  # type: ignore[union-attr]
    assert len({s.uids.sop_instance for s in sources}) == 4  # type: ignore[union-attr]

    toy = ToyFamily()
    models = toy.load(ModelKind.IMAGE_WISE, (), lambda n: Path(n), torch.device("cpu"), SMALL)
    predictor = Predictor(models, SMALL, dicom=DicomOptions(include_uids=True))  # type: ignore[arg-type]
    prepared = predictor.prepare(exam)  # reads the pixels (and their headers)

    # Building the result reads no header: the discovery's values are the result's.
    from mammocli.io.dicom import read, scan

    def no_header(*args: object) -> None:
        raise AssertionError("a DICOM header was read again while building the result")

    monkeypatch.setattr(scan, "read_header", no_header)
    monkeypatch.setattr(read, "read_header", no_header)
    result = predictor.run(exam, ExamRandomness(0), prepared).result
    assert result is not None
    by_file = {s.relative: s.uids for s in sources}
    for view in VIEWS:
        report = result.views[view][0]
        assert report.uids is not None and by_file[report.source] is not None
        assert report.uids.sop_instance == by_file[report.source].sop_instance  # type: ignore[union-attr]
    assert len(written) == 4


def test_the_weights_layer_does_not_import_the_result_schema() -> None:
    import subprocess
    import sys

    code = ("import sys, mammocli.weights.fetch, mammocli.weights.store\n"
            "print('mammocli.outputs.schema' in sys.modules)")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=120, check=False)
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "False"
