"""The ways to get weights without the internet, shipped in the package (the repository's
weights/README.md is not installed): `mammocli weights help` prints GUIDE, and every download
failure's hint ends with WAYS_OUT."""

from __future__ import annotations

GUIDE_COMMAND = "mammocli weights help"

WAYS_OUT = (
    "ways out: --weights-dir DIR (files under their official names, e.g. a training export); "
    "MAMMOCLI_WEIGHTS_URL=https://mirror/ or file:///share/ (a mirror keeping the authors' "
    "paths); or copy the files from a machine that has them, `mammocli weights import FILE...`, "
    f"then run with MAMMOCLI_OFFLINE=1. Details: `{GUIDE_COMMAND}`"
)

GUIDE = """\
Getting the model weights without (or despite) the internet
============================================================

mammocli downloads the official NYU weights (AGPL-3.0) on first use, checks each file's git
blob SHA-1 against the registry shipped in the package, and caches it
(`mammocli weights path` shows the folder; MAMMOCLI_CACHE_DIR moves it). When the download
cannot work, there are four ways out:

1. Files you already have: `mammocli predict ... --weights-dir DIR`
   DIR holds weight files under their official names (`mammocli weights list`), e.g. the
   export/ folder of a `mammocli train` run. Files DIR lacks come from the verified cache, and
   the pipeline sizes come from DIR's model_card.json when it has one. Single files:
   `--weights patch=FILE` (or a name from `mammocli weights register NAME FILE`).

2. An internal mirror: MAMMOCLI_WEIGHTS_URL
   Serve the files keeping the authors' paths (models/<file>, sample_data/images/<file>) over
   http(s), or put them on a shared drive:
     export MAMMOCLI_WEIGHTS_URL=https://models.intranet.example/mammocli/
     export MAMMOCLI_WEIGHTS_URL=file:///mnt/share/mirror/
     mammocli weights download
   Whatever the mirror serves is verified against the registry before it is cached.

3. Copy the files over, then work offline: `mammocli weights import` + MAMMOCLI_OFFLINE=1
   On a machine that has them, `mammocli weights path` shows where they are. Carry them over
   and run:
     mammocli weights import /media/usb/*.p
     MAMMOCLI_OFFLINE=1 mammocli weights verify
   Each file is recognised by its hash (its name does not matter) and copied atomically into the
   cache. With MAMMOCLI_OFFLINE=1 mammocli never touches the network.

4. A prepared cache: run `mammocli weights download` once (e.g. in a Docker build) with
   MAMMOCLI_CACHE_DIR set to a folder you then copy or bake into the image.

Network settings: proxies from HTTPS_PROXY / HTTP_PROXY / NO_PROXY, a site CA bundle from
REQUESTS_CA_BUNDLE; MAMMOCLI_DOWNLOAD_RETRIES (4), MAMMOCLI_DOWNLOAD_BACKOFF (1 s, doubling),
MAMMOCLI_DOWNLOAD_TIMEOUT (60 s). Exit code 4 means a weights problem (missing, failed
verification, download failed).

Provenance: the files come from github.com/nyukat/breast_cancer_classifier at commit
6176ebea6950b0a953339593d2da417ab846dae0; `mammocli weights list --json` shows each file's hash.
"""
