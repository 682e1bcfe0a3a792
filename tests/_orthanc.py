"""A real Orthanc (Debian packages `orthanc`, `orthanc-dicomweb`) for the DICOMweb tests.

`orthanc_server()` starts one on a free loopback port with a temporary storage folder and a
generated config (DICOMweb plugin on, DICOM port off, HTTP basic auth with a test user), and
stops it. Tests skip, saying why, only when the `Orthanc` binary is not installed; a missing
DICOMweb plugin next to an installed Orthanc is an error (install orthanc-dicomweb).

`FlakyProxy` sits in front of it and answers the next N requests with an HTTP error, or cuts the
body of instance retrievals, so retries and malformed instances are tested against the real
server.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path

import pytest
import requests
from pydicom.dataset import Dataset

USER, PASSWORD = "mammocli-test", "not-a-real-secret"
INSTALL = "apt-get install -y orthanc orthanc-dicomweb"
_PLUGIN_PLACES = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
                  "/usr/lib/orthanc/libOrthancDicomWeb.so",
                  "/usr/local/share/orthanc/plugins/libOrthancDicomWeb.so")


def find_orthanc() -> tuple[str, str]:
    """(binary, DICOMweb plugin); skips the test when Orthanc is not installed."""
    binary = shutil.which("Orthanc") or next(
        (p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if Path(p).is_file()), None)
    if binary is None:
        pytest.skip(f"Orthanc is not installed (no 'Orthanc' binary); install it with: {INSTALL}")
    plugin = next((p for p in _PLUGIN_PLACES if Path(p).is_file()), None)
    if plugin is None:
        pytest.fail(f"Orthanc is installed but its DICOMweb plugin is not; run: {INSTALL}")
    return binary, plugin


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Orthanc:
    """A running Orthanc: REST at `url`, DICOMweb at `dicomweb_url`."""

    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.dicomweb_url = url + "/dicom-web"
        self.log = log
        self.session = requests.Session()
        self.session.auth = (USER, PASSWORD)

    def upload(self, data: bytes | Path | Dataset) -> str:
        """Store one instance through the REST API (not DICOMweb: the files arrive as they are,
        malformed ones included); returns Orthanc's instance id."""
        if isinstance(data, Path):
            data = data.read_bytes()
        elif isinstance(data, Dataset):
            buffer = BytesIO()
            data.save_as(buffer, enforce_file_format=True)
            data = buffer.getvalue()
        response = self.session.post(self.url + "/instances", data=data, timeout=30)
        response.raise_for_status()
        return str(response.json()["ID"])

    def upload_folder(self, folder: Path) -> int:
        files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
        for path in files:
            self.upload(path)
        return len(files)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.contextmanager
def orthanc_server(workdir: Path) -> Iterator[Orthanc]:
    binary, plugin = find_orthanc()
    storage = workdir / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    log = workdir / "orthanc.log"
    last_error = ""
    for _ in range(3):  # the free port may be taken between choosing and binding it
        port = free_port()
        config = {
            "Name": "mammocli-test",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpPort": port,
            "DicomServerEnabled": False,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD},
            "HttpCompressionEnabled": False,
            "Plugins": [plugin],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "StudiesMetadata": "Full",
                         "SeriesMetadata": "Full"},
        }
        config_path = workdir / "orthanc.json"
        config_path.write_text(json.dumps(config, indent=2))
        with open(log, "wb") as out:
            process = subprocess.Popen([binary, str(config_path)], stdout=out,
                                       stderr=subprocess.STDOUT, cwd=workdir)
        server = Orthanc(f"http://127.0.0.1:{port}", log)
        if _wait_ready(server, process):
            try:
                yield server
            finally:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            return
        process.kill()
        process.wait()
        last_error = server.log_text()[-2000:]
    raise RuntimeError(f"Orthanc did not start; its log ends with:\n{last_error}")


def _wait_ready(server: Orthanc, process: subprocess.Popen[bytes], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            if server.session.get(server.url + "/system", timeout=2).ok:
                return True
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    return False


class FlakyProxy:
    """An HTTP proxy to `target` on a free loopback port. `fail(n, status)`: the next n requests
    get `status` (or a dropped connection with status 0); `cut_instance(uid)`: retrievals of that
    SOP Instance lose the end of their body (a malformed instance)."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.requests: list[tuple[str, str]] = []  # (method, path) as received
        self._lock = threading.Lock()
        self._failures: list[int] = []
        self._cuts: set[str] = set()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                proxy._forward(self, "GET")

            def do_POST(self) -> None:
                proxy._forward(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def fail(self, count: int, status: int = 500) -> None:
        with self._lock:
            self._failures.extend([status] * count)

    def cut_instance(self, sop_instance_uid: str) -> None:
        with self._lock:
            self._cuts.add(sop_instance_uid)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _forward(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        with self._lock:
            self.requests.append((method, handler.path))
            status = self._failures.pop(0) if self._failures else None
            is_instance = method == "GET" and "/instances/" in handler.path and not \
                handler.path.endswith("/metadata")
            cut = is_instance and handler.path.rstrip("/").rsplit("/", 1)[-1] in self._cuts
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        if status == 0:
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        if status is not None:
            handler.send_response(status)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        headers = {k: v for k, v in handler.headers.items()
                   if k.lower() not in {"host", "content-length", "connection"}}
        upstream = requests.request(method, self.target + handler.path, headers=headers,
                                    data=body, timeout=60)
        content = upstream.content
        if cut:
            content = _cut_part(content, upstream.headers.get("Content-Type", ""))
        handler.send_response(upstream.status_code)
        for key, value in upstream.headers.items():
            if key.lower() not in {"content-length", "transfer-encoding", "connection",
                                   "content-encoding"}:
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()
        handler.wfile.write(content)


def _cut_part(content: bytes, content_type: str) -> bytes:
    """Keep the multipart framing, but cut the DICOM part inside its header (a server that
    sends a broken file)."""
    boundary = next((p.split("=", 1)[1].strip('"') for p in content_type.split(";")
                     if p.strip().startswith("boundary=")), None)
    if boundary is None:
        return content[: len(content) // 2]
    marker = b"--" + boundary.encode()
    head, _, rest = content.partition(b"\r\n\r\n")  # first part's headers
    part = rest.split(b"\r\n" + marker)[0]
    return head + b"\r\n\r\n" + part[:300] + b"\r\n" + marker + b"--\r\n"


PHI = {  # a marker in every identifying field of the uploaded studies (tests check none leaks)
    "PatientName": "MARKERNAME^PHI", "PatientID": "MARKERPID", "PatientBirthDate": "19111111",
    "AccessionNumber": "MARKERACC", "StudyID": "MARKSTID", "StudyDescription": "MARKERSTUDY",
    "InstitutionName": "MARKERINST", "ReferringPhysicianName": "MARKERREF^DR",
    "OperatorsName": "MARKEROP", "PerformingPhysicianName": "MARKERPERF",
    "OtherPatientIDs": "MARKEROTHER", "PatientAddress": "MARKERADDRESS",
    "ImageComments": "MARKERCOMMENT", "StudyDate": "19121212", "StudyTime": "111111",
    "PatientSex": "F", "DeviceSerialNumber": "MARKERSERIAL", "StationName": "MARKERSTATION",
}
