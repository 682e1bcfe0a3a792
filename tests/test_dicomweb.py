"""DICOMweb input and SR store-back against a real Orthanc (tests/_orthanc.py), issue 15."""

from __future__ import annotations

import logging
from pathlib import Path

import pydicom
import pytest
from _orthanc import PASSWORD, PHI, USER, FlakyProxy, Orthanc, orthanc_server
from dicom_factory import make_mg, save_mg, write_decoys, write_exam
from pydicom.uid import generate_uid
from typer.testing import CliRunner

from mammocli.cli.app import app
from mammocli.errors import ConfigError, MissingViewError
from mammocli.io.dicom.options import DicomOptions
from mammocli.io.dicomweb import (
    DicomwebAuth,
    DicomwebAuthError,
    DicomwebError,
    DicomwebSource,
    RetryPolicy,
    auth_from_environment,
    exam_id_for,
    is_dicomweb_path,
    parse_dicomweb_url,
    parse_query,
    read_studies_file,
)
from mammocli.io.discover import discover
from mammocli.io.exam import ExamSource
from mammocli.outputs.dicom_sr import build_sr, read_sr_probabilities, referenced_instances
from mammocli.outputs.schema import PredictionResult
from mammocli.preprocess.prepare import check_usable
from mammocli.views import Side

runner = CliRunner()
FAST = RetryPolicy(attempts=4, backoff=0.0)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory):
    with orthanc_server(tmp_path_factory.mktemp("orthanc")) as server:
        yield server


def source_for(url: str, **kwargs) -> DicomwebSource:
    kwargs.setdefault("auth", DicomwebAuth("basic", PASSWORD, USER))
    kwargs.setdefault("retry", FAST)
    return DicomwebSource(url, **kwargs)


def upload_exam(orthanc: Orthanc, folder: Path, **kwargs) -> tuple[str, dict[str, Path]]:
    study = generate_uid()
    files = write_exam(folder, study_uid=study, rows=400, cols=300, **kwargs)
    orthanc.upload_folder(folder)
    return study, files


def sop_of(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def by_sop(exam: ExamSource, folder: Path) -> tuple[dict[str, str], dict[str, tuple]]:
    """(SOP UID -> view, SOP UID -> (reason, admit_with)) of an exam whose files are in folder,
    so a folder and a retrieved copy with other file names can be compared."""
    views = {sop_of(s.path): view.value for view, sources in exam.images.items()
             for s in sources}
    return views, {s.relative: (s.reason, s.admit_with) for s in exam.skipped}


# --- without a server -------------------------------------------------------------------------

def test_dicomweb_addresses_are_parsed_and_credentials_in_them_refused() -> None:
    assert is_dicomweb_path("dicomweb+https://pacs.example/dicom-web")
    assert not is_dicomweb_path("/data/exams")
    assert parse_dicomweb_url("dicomweb+http://pacs:8042/dicom-web/") == \
        "http://pacs:8042/dicom-web"
    with pytest.raises(ConfigError) as info:
        parse_dicomweb_url("dicomweb+https://alice:hunter2@pacs/dicom-web")
    assert "hunter2" not in str(info.value) and "MAMMOCLI_DICOMWEB_TOKEN" in str(info.value)
    with pytest.raises(ConfigError):
        parse_dicomweb_url("dicomweb+http://pacs/dicom-web?PatientID=1")


def test_credentials_come_from_the_environment_or_a_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    auth = auth_from_environment({"MAMMOCLI_DICOMWEB_TOKEN_FILE": str(token_file)})
    assert auth is not None and auth.kind == "bearer" and auth.secret == "s3cret-token"
    assert "s3cret" not in repr(auth)
    basic = auth_from_environment({"MAMMOCLI_DICOMWEB_USER": "u",
                                   "MAMMOCLI_DICOMWEB_PASSWORD": "pw"})
    assert basic is not None and (basic.kind, basic.user, basic.secret) == ("basic", "u", "pw")
    assert auth_from_environment({}) is None
    with pytest.raises(ConfigError):  # both kinds at once
        auth_from_environment({"MAMMOCLI_DICOMWEB_TOKEN": "t", "MAMMOCLI_DICOMWEB_USER": "u",
                               "MAMMOCLI_DICOMWEB_PASSWORD": "p"})
    with pytest.raises(ConfigError, match="MAMMOCLI_DICOMWEB_PASSWORD"):
        auth_from_environment({"MAMMOCLI_DICOMWEB_USER": "u"})


def test_studies_file_and_query_are_checked_without_echoing_values(tmp_path: Path) -> None:
    uid = generate_uid()
    listing = tmp_path / "studies.txt"
    listing.write_text(f"# screening batch\n{uid}\n\n{uid}\n")
    assert read_studies_file(listing) == [uid]
    listing.write_text(f"{uid}\nDOE^JANE\n")
    with pytest.raises(ConfigError, match="line 2") as info:
        read_studies_file(listing)
    assert "DOE" not in str(info.value)
    assert parse_query(["ModalitiesInStudy=MG", "StudyDate=20240101-20240131"]) == {
        "ModalitiesInStudy": "MG", "StudyDate": "20240101-20240131"}
    with pytest.raises(ConfigError) as info:
        parse_query(["NotAKeyword=SMITH"])
    assert "SMITH" not in str(info.value)


# --- against Orthanc --------------------------------------------------------------------------

def test_retrieved_study_selects_like_the_folder_and_fetches_only_kept_images(
        orthanc: Orthanc, tmp_path: Path) -> None:
    study, files = upload_exam(orthanc, tmp_path / "exam")
    write_decoys(tmp_path / "exam", study)  # tomo, C-View, spot, mag, ML, FOR PROCESSING
    orthanc.upload_folder(tmp_path / "exam")
    folder_exam = discover(tmp_path / "exam").exams[0]
    proxy = FlakyProxy(orthanc.url)
    try:
        source = source_for(proxy.url + "/dicom-web")
        with source.retrieved([study], parent=tmp_path) as studies:
            (retrieved,) = studies
            exam = retrieved.exam
            root = exam.folder.parent
            assert exam.exam_id == exam_id_for(study) == folder_exam_id_of(study)
            views, skipped = by_sop(exam, exam.folder)
            assert sorted(p.name for p in exam.folder.rglob("*.dcm")) == sorted(
                s.path.name for sources in exam.images.values() for s in sources)
            retrieved_names = {r: sop_of_header(retrieved.headers[r]) for r in skipped}
        assert not root.exists()  # the temporary folder is gone
    finally:
        proxy.close()
    folder_views, folder_skipped = by_sop(folder_exam, tmp_path / "exam")
    assert views == folder_views  # same images in the same views
    folder_reasons = {sop_of(tmp_path / "exam" / r): why for r, why in folder_skipped.items()}
    assert {retrieved_names[r]: why for r, why in skipped.items()} == folder_reasons
    assert len(skipped) == 6
    # Pixel data only for the kept images: one instance retrieval per view.
    instance_gets = [p for m, p in proxy.requests if m == "GET" and "/instances/" in p
                     and not p.endswith("/metadata")]
    assert len(instance_gets) == 4
    assert {f for f in files} == set(views.values())


def folder_exam_id_of(study: str) -> str:
    # What folder discovery calls a study that has no folder of its own.
    from mammocli.io.dicom.discover import _short_id

    return _short_id(study)


def sop_of_header(ds: pydicom.Dataset) -> str:
    return str(ds.SOPInstanceUID)




def test_round_trip_predict_sr_store_back_without_phi_in_outputs(
        orthanc: Orthanc, tmp_path: Path, random_weights: Path, small_pipeline: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    study = generate_uid()
    files = {}
    for i, (lat, view) in enumerate((("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO"))):
        ds, _ = make_mg(lat, view, study_uid=study, rows=400, cols=300, seed=i,
                        instance_number=i + 1)
        for keyword, value in PHI.items():
            setattr(ds, keyword, value)
        files[f"{lat}-{view}"] = save_mg(ds, tmp_path / "exam" / f"{lat}_{view}.dcm")
    orthanc.upload_folder(tmp_path / "exam")
    identifiers = [*PHI.values(), study, *(sop_of(p) for p in files.values())]
    identifiers = [v for v in identifiers if len(v) > 2]  # not 'F'

    source = source_for(orthanc.dicomweb_url)
    assert source.find_studies({"AccessionNumber": PHI["AccessionNumber"]}) == [study]
    with source.retrieved([study], parent=tmp_path) as (retrieved,):
        exam = retrieved.exam
        out = tmp_path / "result.json"
        run = runner.invoke(app, ["predict", str(exam.folder), "--weights-dir",
                                  str(random_weights), "--pipeline-config", str(small_pipeline),
                                  "--tta", "1", "--variants", "image-only", "-o", str(out)])
        assert run.exit_code == 0, run.stderr
        result = PredictionResult.model_validate_json(out.read_text())
        sr = build_sr(result, retrieved.headers)
    # No identifier reaches the console, the JSON, the logs or the exam record.
    text = run.stdout + run.stderr + out.read_text() + caplog.text + repr(exam)
    assert [v for v in identifiers if v in text] == []

    source.store([sr])
    stored = [i for i in source._client.search_for_instances(study)
              if "SR" in (i.get("00080060", {}).get("Value") or [])]
    assert len(stored) == 1
    series = stored[0]["0020000E"]["Value"][0]
    back = source._client.retrieve_instance(study, series, str(sr.SOPInstanceUID))
    # A new series in the source study, research-use label, patient module copied.
    assert back.StudyInstanceUID == study and series not in {
        str(pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID)
        for p in files.values()}
    assert "RESEARCH USE ONLY" in back.SeriesDescription
    assert str(back.PatientName) == PHI["PatientName"] and back.PatientID == PHI["PatientID"]
    # The probabilities come back to the printed precision (4 decimals), referencing the images.
    values = read_sr_probabilities(back)["image_only"]
    printed = result.predictions["image_only"]
    for side, breast in ((Side.LEFT, printed.left), (Side.RIGHT, printed.right)):
        assert f"{values[side].malignant:.4f}" == f"{breast.malignant:.4f}"
        assert f"{values[side].benign:.4f}" == f"{breast.benign:.4f}"
    refs = referenced_instances(back)
    assert refs[("image_only", Side.LEFT)] == {sop_of(files["L-CC"]), sop_of(files["L-MLO"])}
    assert refs[("image_only", Side.RIGHT)] == {sop_of(files["R-CC"]), sop_of(files["R-MLO"])}


def test_server_errors_are_retried_with_back_off(orthanc: Orthanc, tmp_path: Path) -> None:
    study, _ = upload_exam(orthanc, tmp_path / "exam")
    proxy = FlakyProxy(orthanc.url)
    waits: list[float] = []
    try:
        source = source_for(proxy.url + "/dicom-web", sleep=waits.append,
                            retry=RetryPolicy(attempts=5, backoff=0.5, max_wait=1.5), workers=1)
        proxy.fail(2, 500)
        proxy.fail(1, 0)  # then a dropped connection
        with source.retrieved([study], parent=tmp_path) as (retrieved,):
            assert retrieved.exam.missing_views == []
        assert waits[:3] == [0.5, 1.0, 1.5]  # doubled, capped
        proxy.fail(10, 503)  # a server that stays down
        with pytest.raises(DicomwebError) as info, source.retrieved([study], parent=tmp_path):
            pass
        assert info.value.exit_code == 3 and "HTTP 503 (5 attempts)" in info.value.message
        assert study not in str(info.value)
    finally:
        proxy.close()
    assert not list(tmp_path.glob("mammocli-dicomweb-*"))


def test_refused_credentials_are_a_clear_error_with_exit_code_2(orthanc: Orthanc) -> None:
    for auth in (DicomwebAuth("basic", "wrong-password", USER), None):
        source = DicomwebSource(orthanc.dicomweb_url, auth=auth, retry=FAST)
        with pytest.raises(DicomwebAuthError) as info:
            source.find_studies({"ModalitiesInStudy": "MG"})
        assert info.value.exit_code == 2 and "HTTP 401" in info.value.message
        assert "MAMMOCLI_DICOMWEB_USER" in (info.value.hint or "")
        assert "wrong-password" not in str(info.value)


def test_a_malformed_instance_is_that_files_rejection(orthanc: Orthanc, tmp_path: Path) -> None:
    study, files = upload_exam(orthanc, tmp_path / "exam")
    # A stored file whose PixelData is shorter than its header declares.
    bad, _ = make_mg("R", "MLO", study_uid=study, rows=400, cols=300, instance_number=9)
    bad.Rows = 500
    orthanc.upload(save_mg(bad, tmp_path / "bad" / "bad.dcm"))
    proxy = FlakyProxy(orthanc.url)
    try:
        source = source_for(proxy.url + "/dicom-web", workers=1)
        proxy.cut_instance(sop_of(files["L-CC"]))  # and this image is cut in transit
        with source.retrieved([study], parent=tmp_path) as (retrieved,):
            exam = retrieved.exam
    finally:
        proxy.close()
    reasons = [s.reason for s in exam.skipped]
    assert any("PixelData holds" in r for r in reasons), reasons
    cut = [r for r in reasons if "PixelData holds" not in r]
    assert len(cut) == 1 and ("cannot be read" in cut[0] or "truncated" in cut[0]), cut
    # The cut image's view is missing; R-MLO has its good image.
    assert [v.value for v in exam.missing_views] == ["L-CC"]
    with pytest.raises(MissingViewError) as info:
        check_usable(exam)
    assert all(s.relative in info.value.message for s in exam.skipped)


def test_missing_views_and_unknown_studies_fail_alone(orthanc: Orthanc, tmp_path: Path) -> None:
    study = generate_uid()
    for i, (lat, view) in enumerate((("L", "CC"), ("R", "CC"), ("L", "MLO"))):
        ds, _ = make_mg(lat, view, study_uid=study, seed=i, instance_number=i + 1)
        orthanc.upload(ds)
    unknown = generate_uid()
    source = source_for(orthanc.dicomweb_url)
    with source.retrieved([study, unknown], DicomOptions(), parent=tmp_path) as studies:
        three, missing = (s.exam for s in studies)
        assert [v.value for v in three.missing_views] == ["R-MLO"]
        with pytest.raises(MissingViewError, match="R-MLO"):
            check_usable(three)
        assert missing.problem is not None and "HTTP 404" in missing.problem.message
        assert "study 2 of 2" in missing.problem.message
        assert unknown not in missing.problem.message
