"""MONAI Label round trip: the app serves both bundles; a region's polygons match the bundle's own GeoJSON.

The server runs from ``.venv-label`` (``scripts/setup_monailabel.sh``) on a folder with one demo slide
(4096² px, made here with the demo generator) and random bundle weights saved here. The MIL weights get
a final bias that puts the bundle's 0.5 threshold at the median logit of the region, so the region holds
both tumor and non-tumor cells. The reference is the MIL bundle's own inferer and outputs with the
same weights and configs through the cohort writer (its ``<slide>.tif`` and ``<slide>.geojson``), computed
while the server starts.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import PROJECT_ROOT

LABEL_PYTHON = PROJECT_ROOT / ".venv-label" / "bin" / "python"
APP = PROJECT_ROOT / "apps" / "monailabel_wsseg"
MIL = PROJECT_ROOT / "bundles" / "mil_tumor_segmentation"
WSSS = PROJECT_ROOT / "bundles" / "wsss_tissue_segmentation"
MIL_CONFIGS = ["inference.json", "cpu.json"]
WSSS_CONFIGS = ["inference.json", "cpu.json", "cpu_seg.json"]
SLIDE = "synth-0000-tumor"
REGION = (1024, 1024, 2048, 2048)  # level-0 x, y, w, h: a whole number of MIL map cells (64 px)

pytestmark = pytest.mark.skipif(
    not LABEL_PYTHON.exists(), reason=f"MONAI Label environment {LABEL_PYTHON.parent.parent} absent: "
                                      "run scripts/setup_monailabel.sh"
)


def bundle_parser(bundle: Path, configs: list[str], values: dict[str, object] | None = None):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / c) for c in configs])
    parser["bundle_root"] = str(bundle)
    parser["device"] = "$torch.device('cpu')"
    for key, value in (values or {}).items():
        parser[key] = value
    return parser


def mil_weights(slide: Path, out: Path) -> Path:
    """Random MIL weights whose threshold splits REGION into tumor and non-tumor cells."""
    from monai_wsseg.wsi.slide import open_slide

    parser = bundle_parser(MIL, MIL_CONFIGS)
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def").eval()
    mpp, halo = parser.get_parsed_content("mpp"), parser.get_parsed_content("infer_halo")
    mean = torch.tensor(parser.get_parsed_content("mean")).view(1, 3, 1, 1)
    std = torch.tensor(parser.get_parsed_content("std")).view(1, 3, 1, 1)
    x, y, w, h = REGION
    with open_slide(slide) as s:
        scale = mpp / s.mpp
        pad = round(halo * scale)
        rgb = s.read_region((x - pad, y - pad), (round(w / scale) + 2 * halo, round(h / scale) + 2 * halo), mpp=mpp)
    batch = (torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255 - mean) / std
    with torch.no_grad():
        logits = net(batch)
    net.classifier.bias.data -= logits.median()
    path = out / "mil.pt"
    torch.save(net.state_dict(), path)
    return path


def wsss_weights(out: Path) -> tuple[Path, Path]:
    parser = bundle_parser(WSSS, WSSS_CONFIGS)
    torch.manual_seed(0)
    paths = out / "segmenter.pt", out / "classifier.pt"
    for key, path in zip(("segmenter_def", "classifier_def"), paths):
        torch.save(parser.get_parsed_content(key).state_dict(), path)
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, fields: dict[str, str], timeout: float = 300) -> tuple[int, bytes]:
    """POST multipart form fields as the QuPath/DSA clients do; (status, body)."""
    import urllib.error
    import urllib.request
    import uuid

    boundary = uuid.uuid4().hex
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ) + f"--{boundary}--\r\n".encode()
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base url, its /info/, the reference maps folder) with the server running; stopped afterwards."""
    import urllib.request

    from monai_wsseg.data.synthetic import make_cohort
    from monai_wsseg.inference.cohort import run_cohort

    tmp = tmp_path_factory.mktemp("monailabel")
    make_cohort(tmp / "cohort", n_tumor=1, n_normal=0, size=(4096, 4096), seed=0, splits=["test"])
    studies = tmp / "cohort" / "slides"
    slide = studies / f"{SLIDE}.tif"
    mil = mil_weights(slide, tmp)
    segmenter, classifier = wsss_weights(tmp)
    env = dict(os.environ, PYTHONWARNINGS="ignore", MONAI_LABEL_SESSIONS="false",
               MONAI_LABEL_DATASTORE_AUTO_RELOAD="false")
    port = free_port()
    log = open(tmp / "server.log", "w")
    server = subprocess.Popen(
        [str(LABEL_PYTHON), "-m", "monailabel.main", "start_server", "--app", str(APP), "--studies", str(studies),
         "--host", "127.0.0.1", "--port", str(port),
         "--conf", "mil_model", str(mil), "--conf", "mil_configs", ",".join(MIL_CONFIGS),
         "--conf", "wsss_segmenter", str(segmenter), "--conf", "wsss_classifier", str(classifier),
         "--conf", "wsss_configs", ",".join(WSSS_CONFIGS), "--conf", "device", "cpu"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        # The reference, while the server starts: the bundle's own inferer and outputs (its configs, these
        # weights) through the cohort writer that `python -m monai.bundle run ... inference.json` ends in.
        maps = tmp / "maps"
        parser = bundle_parser(MIL, MIL_CONFIGS, {"ckpt_path": str(mil), "num_workers": 0,
                                                          "inferer::progress": False})
        run_cohort(parser.get_parsed_content("inferer"), [slide], maps, parser.get_parsed_content("outputs"))
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                pytest.fail(f"MONAI Label server exited ({server.returncode}):\n{(tmp / 'server.log').read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{url}/info/", timeout=5) as r:
                    info = json.loads(r.read())
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"no /info/ after 180 s:\n{(tmp / 'server.log').read_text()[-4000:]}")
                time.sleep(0.5)
        yield url, info, maps
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def shapes(polygons: list[list[list[list[int]]]]):
    """Union of ``[[outer, *holes], ...]`` level-0 polygons."""
    from shapely.geometry import Polygon
    from shapely.ops import unary_union

    return unary_union([Polygon(p[0], p[1:]) for p in polygons])


def test_info_lists_both_bundles_with_their_classes(served):
    _, info, _ = served
    models = info["models"]
    assert models["mil_tumor_segmentation"]["labels"] == ["tumor"]
    assert models["wsss_tissue_segmentation"]["labels"] == ["TE", "NEC", "LYM", "TAS"]


def test_region_polygons_match_the_bundle_outputs(served):
    """The polygons cover exactly the region's cells at or above the threshold in the bundle's map TIFF, and
    agree with its GeoJSON up to the GeoJSON's noise rule (regions and holes under 4 cells dropped/filled)."""
    pytest.importorskip("shapely")
    import shapely
    import tifffile
    from shapely.geometry import box, shape

    url, _, maps = served
    x, y, w, h = REGION
    wsi = {"location": [x, y], "size": [w, h], "tile_size": [1024, 1024], "min_poly_area": 80}
    start = time.perf_counter()
    status, body = post(f"{url}/infer/wsi_v2/mil_tumor_segmentation?image={SLIDE}&output=json", {"wsi": json.dumps(wsi)})
    latency = time.perf_counter() - start
    assert status == 200, body[:2000]
    answer = json.loads(body)
    print(f"\nMONAI Label round trip, one {w}x{h} region on CPU: {latency:.2f} s; server latencies {answer['latencies']}")
    tiles = [a["annotation"] for a in answer["annotations"] if a]
    assert tiles, answer
    contours = [c for t in tiles for e in t["elements"] if e["label"] == "tumor" for c in e["contours"]]
    assert contours and all(len(c) >= 4 for c in contours)
    got = shapes([[c] for c in contours])
    region = box(x, y, x + w, y + h)
    assert got.difference(region).area == 0  # nothing outside the requested region

    # The bundle's map: level 0 of its TIFF, one uint8 round(p × 255) per 64 px cell.
    d = 64
    stored = tifffile.imread(maps / f"{SLIDE}.tif", level=0)[y // d : (y + h) // d, x // d : (x + w) // d]
    cy, cx = np.mgrid[y + d / 2 : y + h : d, x + d / 2 : x + w : d]
    drawn = shapely.contains_xy(got, cx, cy)
    decided = stored != 128  # 128 holds p on both sides of 0.5
    wrong = int((drawn != (stored >= 128))[decided].sum())
    tumor = float((stored >= 128).mean())
    assert 0.2 < tumor < 0.8, f"calibration failed: tumor covers {tumor:.0%} of the region"

    features = json.loads((maps / f"{SLIDE}.geojson").read_text())["features"]
    parts = []
    for f in features:
        geom = shape(f["geometry"])
        parts += list(getattr(geom, "geoms", [geom]))
    ref = shapes([[list(p.exterior.coords), *[list(r.coords) for r in p.interiors]] for p in parts]).intersection(region)
    iou = got.intersection(ref).area / got.union(ref).area
    print(f"vs the bundle's map: {wrong} of {int(decided.sum())} cells differ (tumor {tumor:.0%}); "
          f"vs its GeoJSON: IoU {iou:.4f}, {got.symmetric_difference(ref).area / d**2:.0f} cells differ; "
          f"{len(contours)} polygons")
    assert wrong == 0
    assert iou > 0.9, f"IoU {iou:.4f} with the bundle's GeoJSON"


def test_wsss_region_returns_tissue_classes(served):
    url, _, _ = served
    # 112 map cells of 2 px: a multiple of the plan's step, so 2 x 2 windows of 224 px compute the region
    wsi = {"location": [1120, 1120], "size": [224, 224], "tile_size": [1024, 1024]}
    status, body = post(f"{url}/infer/wsi_v2/wsss_tissue_segmentation?image={SLIDE}&output=json",
                        {"wsi": json.dumps(wsi)})
    assert status == 200, body[:2000]
    tiles = [a["annotation"] for a in json.loads(body)["annotations"] if a]
    assert tiles and all(set(t["labels"]) == {"TE", "NEC", "LYM", "TAS"} for t in tiles)
    labels = {e["label"] for t in tiles for e in t["elements"]}
    assert labels <= {"TE", "NEC", "LYM", "TAS"}


def test_unknown_slide_gets_a_clear_message(served):
    url = served[0]
    status, body = post(f"{url}/infer/wsi_v2/mil_tumor_segmentation?image=no-such-slide&output=json",
                        {"wsi": json.dumps({"location": [0, 0], "size": [2048, 2048]})})
    assert status == 404
    detail = json.loads(body)["detail"]
    assert "no-such-slide" in detail and "not in the studies folder" in detail and SLIDE in detail


def test_region_outside_the_slide_gets_a_clear_message(served):
    url = served[0]
    status, body = post(f"{url}/infer/wsi_v2/mil_tumor_segmentation?image={SLIDE}&output=json",
                        {"wsi": json.dumps({"location": [50000, 0], "size": [2048, 2048]})})
    assert status == 400 and "outside the slide" in json.loads(body)["detail"]
