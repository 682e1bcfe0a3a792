"""A loopback weights mirror for the weights tests: generated files, their hashes in a registry
manifest (MAMMOCLI_REGISTRY), and MAMMOCLI_WEIGHTS_URL pointing at a pytest-httpserver."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

NAMES = {  # canonical name -> alias, as in the shipped registry
    "sample_patch_model.p": "patch",
    "sample_image_model.p": "view-image",
}
SAMPLES = ["0_L_CC.png", "0_R_MLO.png", "1_L_CC.png"]


def blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Mirror:
    server: HTTPServer
    manifest: Path
    files: dict[str, bytes] = field(default_factory=dict)  # name -> content
    samples: dict[str, bytes] = field(default_factory=dict)

    @staticmethod
    def uri(name: str) -> str:
        return f"/models/{name}"

    def serve(self, name: str) -> None:
        self.server.expect_request(self.uri(name)).respond_with_data(
            self.files[name], content_type="application/octet-stream")

    def serve_all(self) -> None:
        for name in self.files:
            self.serve(name)
        for name, data in self.samples.items():
            self.server.expect_request(f"/sample_data/images/{name}").respond_with_data(data)

    def requests_for(self, name: str) -> int:
        return sum(1 for req, _ in self.server.log if req.path == self.uri(name))


def make_mirror(tmp_path: Path, server: HTTPServer, monkeypatch: pytest.MonkeyPatch,
                size: int = 200_000) -> Mirror:
    rng = random.Random(0)
    files = {name: rng.randbytes(size + i) for i, name in enumerate(NAMES)}
    samples = {name: rng.randbytes(5_000 + i) for i, name in enumerate(SAMPLES)}
    manifest = tmp_path / "registry.json"
    manifest.write_text(json.dumps({
        "commit": "0" * 40,
        "weights": [{"name": n, "alias": NAMES[n], "path": f"models/{n}", "role": "test",
                     "git_sha1": blob_sha1(d), "licence": "test"} for n, d in files.items()],
        "samples": [{"name": n, "path": f"sample_data/images/{n}", "exam": f"exam_{n[0]}",
                     "git_sha1": blob_sha1(d), "licence": "test"} for n, d in samples.items()],
    }))
    monkeypatch.setenv("MAMMOCLI_REGISTRY", str(manifest))
    monkeypatch.setenv("MAMMOCLI_WEIGHTS_URL", server.url_for("/"))
    # Tiny back-off so retry tests stay fast; real users get 1 s doubling.
    monkeypatch.setenv("MAMMOCLI_DOWNLOAD_RETRIES", "2")
    monkeypatch.setenv("MAMMOCLI_DOWNLOAD_BACKOFF", "0.01")
    monkeypatch.setenv("MAMMOCLI_DOWNLOAD_TIMEOUT", "5")
    return Mirror(server=server, manifest=manifest, files=files, samples=samples)


def cache_dir() -> Path:
    import os

    return Path(os.environ["MAMMOCLI_CACHE_DIR"]) / "weights"


def leftovers(folder: Path) -> list[str]:
    """Anything in the cache folder that is not a final file or a lock (temp files, partials)."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if not p.name.endswith(".lock") and p.name not in NAMES)


def make_file_mirror(tmp_path: Path, server: HTTPServer, monkeypatch: pytest.MonkeyPatch,
                     weights: list[Path], samples: dict[str, list[Path]]) -> Path:
    """Serve existing files (read in place) under the authors' paths, with a registry override
    holding their git blob hashes computed now. `samples` maps an exam folder to its files.
    Returns the registry manifest (also set as MAMMOCLI_REGISTRY)."""
    entries: list[dict[str, str]] = []
    for path in weights:
        data = path.read_bytes()
        server.expect_request(f"/models/{path.name}").respond_with_data(data)
        entries.append({"name": path.name, "path": f"models/{path.name}", "role": "test",
                        "git_sha1": blob_sha1(data), "licence": "test"})
    sample_entries: list[dict[str, str]] = []
    for exam, paths in samples.items():
        for path in paths:
            data = path.read_bytes()
            server.expect_request(f"/sample_data/images/{path.name}").respond_with_data(data)
            sample_entries.append({"name": path.name, "path": f"sample_data/images/{path.name}",
                                   "exam": exam, "git_sha1": blob_sha1(data),
                                   "licence": "test"})
    manifest = tmp_path / "registry.json"
    manifest.write_text(json.dumps({"commit": "0" * 40, "weights": entries,
                                    "samples": sample_entries}))
    monkeypatch.setenv("MAMMOCLI_REGISTRY", str(manifest))
    monkeypatch.setenv("MAMMOCLI_WEIGHTS_URL", server.url_for("/"))
    monkeypatch.setenv("MAMMOCLI_DOWNLOAD_TIMEOUT", "60")
    return manifest
