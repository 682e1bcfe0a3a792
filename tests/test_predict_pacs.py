"""`mammocli predict` against a real PACS (Orthanc, tests/_orthanc.py), issue 15: DICOMweb input,
--dicom-out and --store-back, --resume by StudyInstanceUID, the documented exit codes."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path

import pydicom
import pytest
from _orthanc import PASSWORD, USER, FlakyProxy, Orthanc, free_port, orthanc_server
from _orthanc import PHI as SHARED_PHI
from dicom_factory import write_decoys, write_exam
from pydicom.uid import generate_uid
from typer.testing import CliRunner

from mammocli.cli.app import app
from mammocli.io.dicomweb import DicomwebAuth, DicomwebSource, exam_id_for
from mammocli.outputs.dicom_sr import read_sr_probabilities, referenced_instances
from mammocli.synthetic.phantoms import write_exam as write_png_exam
from mammocli.views import Side

runner = CliRunner()
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
CREDENTIALS = {"MAMMOCLI_DICOMWEB_USER": USER, "MAMMOCLI_DICOMWEB_PASSWORD": PASSWORD}

# The shared markers, less PatientSex (a plain "F" also appears in ordinary text), plus the
# series description the SR must not copy into logs.
PHI = {**{k: v for k, v in SHARED_PHI.items() if k != "PatientSex"},
       "SeriesDescription": "MARKERSERIES"}


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory):
    with orthanc_server(tmp_path_factory.mktemp("orthanc")) as server:
        yield server


@pytest.fixture()
def model_args(random_weights: Path, small_pipeline: Path) -> list[str]:
    return ["--weights-dir", str(random_weights), "--pipeline-config", str(small_pipeline),
            "--tta", "1", "--variants", "image-only"]


@pytest.fixture()
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system temporary folder of this test, to see that retrieval leaves nothing."""
    folder = tmp_path / "system-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def predict(*args: str | Path, env: dict[str, str] | None = None):
    return runner.invoke(app, ["predict", *map(str, args)], env={**CREDENTIALS, **(env or {})})


def upload_study(orthanc: Orthanc, folder: Path, *, decoys: bool = False,
                 phi: bool = False, seed: int = 0) -> tuple[str, dict[str, Path]]:
    study = generate_uid()
    files = write_exam(folder, study_uid=study, rows=400, cols=300, seed=seed)
    if decoys:
        write_decoys(folder, study)
    if phi:
        for path in sorted(folder.rglob("*.dcm")):
            ds = pydicom.dcmread(path)
            for keyword, value in PHI.items():
                setattr(ds, keyword, value)
            ds.save_as(path)
    orthanc.upload_folder(folder)
    return study, files


def sop_of(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def test_pacs_round_trip_through_predict_equals_the_folder_run_and_shows_no_phi(
        orthanc: Orthanc, tmp_path: Path, model_args: list[str], private_tmp: Path) -> None:
    study, files = upload_study(orthanc, tmp_path / "exam", decoys=True, phi=True)
    identifiers = [v for v in (*PHI.values(), study, *map(sop_of, files.values()))
                   if len(v) > 2]

    folder = predict(tmp_path / "exam", *model_args, "-o", tmp_path / "folder.json",
                     "--dicom-out", f"{tmp_path / 'folder-sr'}/")
    assert folder.exit_code == 0, folder.stderr
    pacs = predict(f"dicomweb+{orthanc.dicomweb_url}", "--study", study, *model_args,
                   "-o", tmp_path / "pacs.json", "--dicom-out", f"{tmp_path / 'pacs-sr'}/",
                   "--store-back")
    assert pacs.exit_code == 0, pacs.stderr
    from_folder = json.loads((tmp_path / "folder.json").read_text())
    from_pacs = json.loads((tmp_path / "pacs.json").read_text())

    # Same numbers, same selection (one image per view, the same reasons for the six decoys).
    assert from_pacs["exam_id"] == exam_id_for(study)
    assert from_pacs["predictions"] == from_folder["predictions"]
    assert {v: len(i) for v, i in from_pacs["views"].items()} == \
        {v: len(i) for v, i in from_folder["views"].items()}
    assert Counter(s["reason"] for s in from_pacs["skipped_files"]) == \
        Counter(s["reason"] for s in from_folder["skipped_files"])
    assert len(from_pacs["skipped_files"]) == 6

    # No identifier on the console or in the JSON; the retrieval folder is gone.
    text = pacs.stdout + pacs.stderr + (tmp_path / "pacs.json").read_text()
    assert [v for v in identifiers if v in text] == []
    assert list(private_tmp.iterdir()) == []

    # The SR: in --dicom-out and on the server, a new series of the study, same numbers,
    # referencing the four images; the folder run's SR says the same.
    [sr_file] = (tmp_path / "pacs-sr").glob("*.sr.dcm")
    assert sr_file.name == f"{exam_id_for(study)}.sr.dcm"
    sr = pydicom.dcmread(sr_file)
    [folder_sr] = (tmp_path / "folder-sr").glob("*.sr.dcm")
    printed = from_pacs["predictions"]["image_only"]
    for made in (sr, pydicom.dcmread(folder_sr)):
        values = read_sr_probabilities(made)["image_only"]
        for side, name in ((Side.LEFT, "left"), (Side.RIGHT, "right")):
            assert f"{values[side].malignant:.4f}" == f"{printed[name]['malignant']:.4f}"
            assert f"{values[side].benign:.4f}" == f"{printed[name]['benign']:.4f}"
        refs = referenced_instances(made)
        assert refs[("image_only", Side.LEFT)] == {sop_of(files["L-CC"]), sop_of(files["L-MLO"])}
        assert refs[("image_only", Side.RIGHT)] == {sop_of(files["R-CC"]),
                                                    sop_of(files["R-MLO"])}
    client = DicomwebSource(orthanc.dicomweb_url, auth=DicomwebAuth("basic", PASSWORD, USER))
    stored = [i for i in client._client.search_for_instances(study)
              if "SR" in (i.get("00080060", {}).get("Value") or [])]
    assert [i["00080018"]["Value"][0] for i in stored] == [str(sr.SOPInstanceUID)]
    assert str(sr.StudyInstanceUID) == study and "RESEARCH USE ONLY" in sr.SeriesDescription


def test_resume_skips_finished_studies_before_retrieving_and_unknown_studies_fail_alone(
        orthanc: Orthanc, tmp_path: Path, model_args: list[str]) -> None:
    study, _ = upload_study(orthanc, tmp_path / "exam", seed=4)
    proxy = FlakyProxy(orthanc.url)
    try:
        address = f"dicomweb+{proxy.url}/dicom-web"
        first = predict(address, "--study", study, *model_args, "-o", f"{tmp_path / 'res'}/")
        assert first.exit_code == 0, first.stderr
        proxy.requests.clear()
        unknown = generate_uid()
        again = predict(address, "--study", study, "--study", unknown, *model_args,
                        "-o", f"{tmp_path / 'res'}/", "--resume")
        asked = list(proxy.requests)
    finally:
        proxy.close()
    assert again.exit_code == 3, again.stderr  # the unknown study failed, alone
    assert not any(study in path for _, path in asked)  # the done study: not even its metadata
    assert any(unknown in path for _, path in asked)
    done = json.loads((tmp_path / "res" / f"{exam_id_for(study)}.json").read_text())
    missing = json.loads((tmp_path / "res" / f"{exam_id_for(unknown)}.json").read_text())
    assert done["status"] == "ok" and missing["status"] == "failed"
    assert "HTTP 404" in missing["error"] and unknown not in again.stderr + json.dumps(missing)
    assert "1 study(ies) already done" in again.stderr


def test_refused_credentials_exit_2_and_a_server_that_is_down_exits_3(
        orthanc: Orthanc, model_args: list[str]) -> None:
    refused = predict(f"dicomweb+{orthanc.dicomweb_url}", "--query", "ModalitiesInStudy=MG",
                      *model_args, env={"MAMMOCLI_DICOMWEB_PASSWORD": "wrong-password"})
    assert refused.exit_code == 2, refused.stderr
    assert "refused the credentials (HTTP 401)" in refused.stderr
    assert "wrong-password" not in refused.stderr + refused.stdout
    down = predict(f"dicomweb+http://127.0.0.1:{free_port()}/dicom-web", "--study",
                   generate_uid(), *model_args)
    assert down.exit_code == 3, down.stderr
    assert "connection failed (5 attempts)" in down.stderr


def test_dicom_outputs_need_dicom_input_and_store_back_a_dicomweb_one(
        tmp_path: Path, model_args: list[str]) -> None:
    png = write_png_exam(tmp_path / "png", shape=(400, 300), seed=1)
    run = predict(png, *model_args, "--dicom-out", f"{tmp_path / 'sr'}/")
    assert run.exit_code == 2 and "a DICOM SR needs DICOM images" in run.stderr
    assert not (tmp_path / "sr").exists()
    run = predict(png, *model_args, "--store-back")
    assert run.exit_code == 2 and "needs a dicomweb+http(s):// address" in run.stderr
    run = predict(png, *model_args, "--study", generate_uid())
    assert run.exit_code == 2 and "--study" in run.stderr


def test_store_back_sends_the_heatmap_segmentations_and_pictures_into_new_series_of_the_study(
        orthanc: Orthanc, tmp_path: Path, random_weights: Path, small_pipeline: Path) -> None:
    study, files = upload_study(orthanc, tmp_path / "exam", phi=True, seed=7)
    run = predict(f"dicomweb+{orthanc.dicomweb_url}", "--study", study, "--weights-dir",
                  random_weights, "--pipeline-config", small_pipeline, "--tta", "1",
                  "--variants", "image-and-heatmaps", "-o", tmp_path / "r.json", "--store-back",
                  "--dicom-heatmaps", "seg,sc")
    assert run.exit_code == 0, run.stderr
    client = DicomwebSource(orthanc.dicomweb_url, auth=DicomwebAuth("basic", PASSWORD, USER))
    found = client._client.search_for_instances(study, search_filters={"Modality": "SEG"})
    assert len(found) == 4
    sources = {sop_of(p): p for p in files.values()}
    source_series = {str(pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID)
                     for p in files.values()}
    referenced, series = set(), set()
    for item in found:
        seg = client._client.retrieve_instance(study, item["0020000E"]["Value"][0],
                                               item["00080018"]["Value"][0])
        series.add(str(seg.SeriesInstanceUID))
        [ref] = {str(f.DerivationImageSequence[0].SourceImageSequence[0]
                     .ReferencedSOPInstanceUID) for f in seg.PerFrameFunctionalGroupsSequence}
        referenced.add(ref)
        source = pydicom.dcmread(sources[ref], stop_before_pixels=True)
        assert (seg.Rows, seg.Columns) == (source.Rows, source.Columns)
        assert seg.StudyInstanceUID == study and "RESEARCH USE ONLY" in seg.SeriesDescription
        assert seg.PatientID == PHI["PatientID"]  # identifiers belong in the PACS object
    assert referenced == set(sources)  # one per source image, each the right one
    assert len(series) == 1 and not series & source_series
    # The colour Secondary Captures: a malignant and a benign picture per source image, in
    # the source's geometry, a third new series, with the research-use notice.
    pictures = client._client.search_for_instances(
        study, search_filters={"SOPClassUID": SC_CLASS})
    assert len(pictures) == 8
    pictured: Counter[str] = Counter()
    picture_series = set()
    for item in pictures:
        sc = client._client.retrieve_instance(study, item["0020000E"]["Value"][0],
                                              item["00080018"]["Value"][0])
        ref = str(sc.SourceImageSequence[0].ReferencedSOPInstanceUID)
        pictured[ref] += 1
        picture_series.add(str(sc.SeriesInstanceUID))
        source = pydicom.dcmread(sources[ref], stop_before_pixels=True)
        assert (sc.Rows, sc.Columns, sc.PhotometricInterpretation) == \
            (source.Rows, source.Columns, "RGB")
        assert sc.BurnedInAnnotation == "YES" and "RESEARCH USE ONLY" in sc.SeriesDescription
        assert sc.StudyInstanceUID == study and sc.PatientID == PHI["PatientID"]
    assert pictured == dict.fromkeys(sources, 2)
    assert len(picture_series) == 1 and not picture_series & (series | source_series)
    text = run.stdout + run.stderr + (tmp_path / "r.json").read_text()
    assert [v for v in (*PHI.values(), study, *sources) if len(v) > 2 and v in text] == []
