# SPDX-License-Identifier: Apache-2.0
"""Every bundle served by a real MONAI Label 0.8.5 server (its ``monaibundle`` sample app) on 127.0.0.1.

The server runs from its own environment (``bash tests/label/build_env.sh`` builds ``.venv-label``; MONAI Label
needs torchvision, whose wheels only import beside torch 2.14.1); without it the test is skipped. Each bundle is
trained for one tiny epoch on phantoms (the contract test's fixtures), exported with ``export_bundle`` into the app's
``model/`` folder, then a phantom volume is uploaded and ``POST /infer/<bundle>`` must return a uint8 {0, 1} mask with
the input's shape and affine. Oracle: the uploaded file's own header, and MONAI Label's HTTP status.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.bundles.test_contract import BUNDLES, dataset, trained  # noqa: F401 (fixtures)
from tests.label.host import client_image, export_for_serving

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
LABEL_ENV = Path(os.environ.get("MONAI_ADIFF_LABEL_ENV", REPO / ".venv-label"))
MONAILABEL = LABEL_ENV / "bin" / "monailabel"

if not MONAILABEL.is_file():
    pytest.skip(
        f"no MONAI Label environment at {LABEL_ENV} (build it with: bash tests/label/build_env.sh)",
        allow_module_level=True,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, method: str = "GET", file: Path | None = None, timeout: float = 600) -> tuple[int, bytes]:
    """One HTTP request; ``file`` goes as the multipart field ``file`` (what MONAI Label's endpoints read)."""
    body, headers = None, {}
    if file is not None:
        boundary = uuid.uuid4().hex
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file.name}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + file.read_bytes()
            + f"\r\n--{boundary}--\r\n".encode()
        )
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def server(trained, dataset, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("label")
    # the monailabel script runs the `python` it finds first on PATH
    env = {**os.environ, "PATH": f"{LABEL_ENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("VIRTUAL_ENV", None)
    subprocess.run(
        [str(MONAILABEL), "apps", "--download", "--name", "monaibundle", "--output", str(root / "apps")],
        check=True,
        capture_output=True,
        env=env,
    )
    app = root / "apps" / "monaibundle"
    for name in BUNDLES:
        export_for_serving(name, trained[name]["work"] / "models" / "model.pt", app / "model" / name)
    (root / "studies").mkdir()
    port = _free_port()
    log = open(root / "server.log", "wb")
    cmd = [str(MONAILABEL), "start_server", "--app", str(app), "--studies", str(root / "studies")]
    for conf in (f"models {','.join(BUNDLES)}", "zoo_source github", "sam2 false", "skip_trainers true"):
        cmd += ["--conf", *conf.split(" ", 1)]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                status, body = _request(f"{url}/info/", timeout=10)
                if status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"MONAI Label did not start:\n{(root / 'server.log').read_text(encoding='utf-8')[-4000:]}"
                )
            time.sleep(2)
        yield {"url": url, "info": json.loads(body), "root": root, "log": root / "server.log"}
    finally:
        # the server's process group: uvicorn and its workers
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
        log.close()


def test_info_lists_every_bundle_as_3d(server):
    models = server["info"]["models"]
    for name in BUNDLES:
        assert name in models, f"{name} not served:\n{server['log'].read_text(encoding='utf-8')[-3000:]}"
        assert models[name]["dimension"] == 3 and models[name]["labels"] == {"anomaly": 1}


@pytest.mark.parametrize("name", BUNDLES)
def test_infer_returns_the_mask_on_the_input_grid(name, server, dataset, tmp_path):  # noqa: F811
    item = dataset["test"][0]
    ref = nib.load(item["flair"])
    upload = client_image(name, item, tmp_path)
    image_id = f"{name}_{item['case']}"
    status, body = _request(f"{server['url']}/datastore/image?image={image_id}", "PUT", upload)
    assert status == 200, body[-2000:]
    status, body = _request(f"{server['url']}/infer/{name}?image={image_id}&output=image", "POST")
    assert status == 200, f"{body[-2000:]!r}\n{server['log'].read_text(encoding='utf-8')[-4000:]}"
    result = tmp_path / "result.nii.gz"
    result.write_bytes(body)
    mask = nib.load(result)
    data = np.asarray(mask.dataobj)
    assert data.dtype == np.uint8 and set(np.unique(data).tolist()) <= {0, 1}
    assert data.shape == ref.shape
    np.testing.assert_allclose(mask.affine, ref.affine, atol=1e-4)
    # nothing written into the served bundle (its writers are dropped by MONAI Label)
    assert not (server["root"] / "apps" / "monaibundle" / "model" / name / "eval").exists()
