"""MONAI Label round trip: the app serves both bundles; a region's polygons match the bundle's own outputs.

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
# The CPU profile maps patch by patch; a random network's patch-wise map is speckled, and the GeoJSON's
# noise rule (regions under 4 cells dropped) would then dominate the comparison below. Tiles keep the map
# smooth, so the test checks the polygons, not the speckle.
MIL_CONFIGS = ["inference.json", "cpu.json", str(Path(__file__).resolve().parent / "mil_tiles.json")]
WSSS_CONFIGS = ["inference.json", "cpu.json", "cpu_seg.json"]
SLIDE = "synth-0000-tumor"
REGION = (1024, 1024, 2048, 2048)  # level-0 x, y, w, h: a whole number of MIL map cells (64 px)
# 112 WSSS map cells of 2 px: a multiple of the plan's step, so 2 x 2 windows of 224 px compute the region
WSSS_REGION = (1120, 1120, 224, 224)

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
    parser = bundle_parser(MIL, MIL_CONFIGS)
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def").eval()
    x, y, w, _ = REGION
    halo = parser.get_parsed_content("infer_halo")
    scale = parser.get_parsed_content("mpp") / 0.5  # level-0 px per input px (the demo slides are 0.5 um/px)
    side = round(w / scale) + 2 * halo
    with torch.no_grad():
        logits = net(normalised_window(slide, parser, (x - round(halo * scale), y - round(halo * scale)), side))
    net.classifier.bias.data -= logits.median()
    path = out / "mil.pt"
    torch.save(net.state_dict(), path)
    return path


def wsss_weights(slide: Path, out: Path) -> tuple[Path, Path]:
    """Random WSSS weights that put several classes in WSSS_REGION: the segmenter's last layer is shifted
    so that every class's logit is centred on that region and scaled so that they spread over ±4 (the
    softmax then often passes the bundle's 0.5 threshold; raw random logits give every class about 0.25),
    and the classifier's weights are made positive so that the gate opens every class."""
    parser = bundle_parser(WSSS, WSSS_CONFIGS)
    torch.manual_seed(0)
    segmenter, classifier = parser.get_parsed_content("segmenter_def"), parser.get_parsed_content("classifier_def")
    with torch.no_grad():
        logits = segmenter.eval()(normalised_window(slide, parser, WSSS_REGION[:2], 224))
        centre = logits.flatten(2).median(dim=2).values[0]
        gain = 4 / float((logits - centre.view(1, -1, 1, 1)).std())
        segmenter.classifier.weight *= gain
        segmenter.classifier.bias.copy_(gain * (segmenter.classifier.bias - centre))
        classifier.classifier.weight.abs_()  # it reads ReLU features and has no bias: every logit ≥ 0
    paths = out / "segmenter.pt", out / "classifier.pt"
    torch.save(segmenter.state_dict(), paths[0])
    torch.save(classifier.state_dict(), paths[1])
    return paths


def normalised_window(slide: Path, parser, location: tuple[int, int], size: int) -> torch.Tensor:
    """``(1, 3, size, size)`` network input read at the bundle's mpp from level-0 ``location``."""
    from monai_wsseg.wsi.slide import open_slide

    mean = torch.tensor(parser.get_parsed_content("mean")).view(1, 3, 1, 1)
    std = torch.tensor(parser.get_parsed_content("std")).view(1, 3, 1, 1)
    with open_slide(slide) as s:
        rgb = s.read_region(location, (size, size), mpp=parser.get_parsed_content("mpp"))
    return (torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255 - mean) / std


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
    """{url, info (its /info/), maps (the MIL reference), slide, segmenter, classifier} with the server
    running; stopped afterwards."""
    import urllib.request

    from monai_wsseg.inference.cohort import run_cohort
    from monai_wsseg.synthetic.generator import make_cohort

    tmp = tmp_path_factory.mktemp("monailabel")
    make_cohort(tmp / "cohort", n_tumor=1, n_normal=0, size=(4096, 4096), seed=0, splits=["test"])
    studies = tmp / "cohort" / "slides"
    slide = studies / f"{SLIDE}.tif"
    (studies / "broken.tif").write_bytes(b"II*\x00" + bytes(60))  # a TIFF header and nothing readable
    mil = mil_weights(slide, tmp)
    segmenter, classifier = wsss_weights(slide, tmp)
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
                log = (tmp / "server.log").read_text()[-4000:]
                pytest.fail(f"MONAI Label server exited ({server.returncode}):\n{log}")
            try:
                with urllib.request.urlopen(f"{url}/info/", timeout=5) as r:
                    info = json.loads(r.read())
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"no /info/ after 180 s:\n{(tmp / 'server.log').read_text()[-4000:]}")
                time.sleep(0.5)
        yield {"url": url, "info": info, "maps": maps, "slide": slide, "segmenter": segmenter,
               "classifier": classifier}
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
    models = served["info"]["models"]
    assert models["mil_tumor_segmentation"]["labels"] == ["tumor"]
    assert models["wsss_tissue_segmentation"]["labels"] == ["TE", "NEC", "LYM", "TAS"]


def test_region_polygons_match_the_bundle_outputs(served):
    """The polygons cover exactly the region's cells at or above the threshold in the bundle's map TIFF, and
    agree with its GeoJSON up to the GeoJSON's noise rule (regions and holes under 4 cells dropped/filled)."""
    pytest.importorskip("shapely")
    import shapely
    import tifffile
    from shapely.geometry import box, shape

    url, maps = served["url"], served["maps"]
    x, y, w, h = REGION
    wsi = {"location": [x, y], "size": [w, h], "tile_size": [1024, 1024], "min_poly_area": 80}
    start = time.perf_counter()
    # output=dsa: the annotation document the Digital Slide Archive plugin draws
    status, body = post(f"{url}/infer/wsi_v2/mil_tumor_segmentation?image={SLIDE}&output=dsa", {"wsi": json.dumps(wsi)})
    latency = time.perf_counter() - start
    assert status == 200, body[:2000]
    document = json.loads(body)
    print(f"\nMONAI Label round trip, one {w}x{h} region on CPU: {latency:.2f} s; "
          f"server latencies {json.loads(document['description'])['latencies']}")
    elements = document["elements"]
    assert elements and all(e["type"] == "polyline" and e["closed"] and e["group"] == "tumor" for e in elements)
    contours = [[p[:2] for p in e["points"]] for e in elements]
    assert all(len(c) >= 4 for c in contours)
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
    rings = [[list(p.exterior.coords), *[list(r.coords) for r in p.interiors]] for p in parts]
    ref = shapes(rings).intersection(region)
    iou = got.intersection(ref).area / got.union(ref).area
    print(f"vs the bundle's map: {wrong} of {int(decided.sum())} cells differ (tumor {tumor:.0%}); "
          f"vs its GeoJSON: IoU {iou:.4f}, {got.symmetric_difference(ref).area / d**2:.0f} cells differ; "
          f"{len(contours)} polygons")
    assert wrong == 0
    assert iou > 0.9, f"IoU {iou:.4f} with the bundle's GeoJSON"


def test_wsss_region_polygons_match_the_bundle_map(served):
    """Tissue classes come back with the bundle's names and colours, covering the region's cells of each
    class exactly as the bundle's inferer and outputs give them (region cells = whole-slide cells is
    tests/inference/test_region.py; the whole-slide WSSS run is minutes on a CPU)."""
    pytest.importorskip("shapely")
    from monai_wsseg.inference.region import infer_region

    names = ["TE", "NEC", "LYM", "TAS"]
    x, y, w, h = WSSS_REGION
    wsi = {"location": [x, y], "size": [w, h], "tile_size": [1024, 1024], "min_poly_area": 0}
    status, body = post(f"{served['url']}/infer/wsi_v2/wsss_tissue_segmentation?image={SLIDE}&output=json",
                        {"wsi": json.dumps(wsi)})
    assert status == 200, body[:2000]
    tiles = [a["annotation"] for a in json.loads(body)["annotations"] if a]
    assert tiles and all(list(t["labels"]) == names for t in tiles)

    parser = bundle_parser(WSSS, WSSS_CONFIGS, {"segmenter_path": str(served["segmenter"]), "num_workers": 0,
                                                "classifier_path": str(served["classifier"]),
                                                "inferer::progress": False})
    outputs = parser.get_parsed_content("outputs")
    region = infer_region(parser.get_parsed_content("inferer"), served["slide"], (x, y, w, h))
    expected = region.polygons(list(outputs.class_names), threshold=outputs.threshold)
    areas = {}
    for name in names:
        got = shapes([[c] for t in tiles for e in t["elements"] if e["label"] == name for c in e["contours"]])
        ref = shapes([p.rings for p in expected if p.class_name == name])
        assert got.symmetric_difference(ref).area == 0, name
        areas[name] = got.area / (w * h)
    print(f"\nWSSS region: class shares {({k: round(v, 3) for k, v in areas.items()})}, all equal to the bundle's")
    assert sum(v > 0 for v in areas.values()) >= 2, "the calibration should give several classes in the region"


def test_unknown_slide_gets_a_clear_message(served):
    url = served["url"]
    for endpoint, field, value in [("wsi_v2/", "wsi", {"location": [0, 0], "size": [2048, 2048]}),
                                   ("", "params", {"location": [0, 0], "size": [2048, 2048]})]:
        status, body = post(f"{url}/infer/{endpoint}mil_tumor_segmentation?image=no-such-slide&output=json",
                            {field: json.dumps(value)})
        assert status == 404, body[:500]
        detail = json.loads(body)["detail"]
        assert "no-such-slide" in detail and "not in the studies folder" in detail and SLIDE in detail


def test_region_outside_the_slide_gets_a_clear_message(served):
    url = served["url"]
    status, body = post(f"{url}/infer/wsi_v2/mil_tumor_segmentation?image={SLIDE}&output=json",
                        {"wsi": json.dumps({"location": [50000, 0], "size": [2048, 2048]})})
    assert status == 400 and "outside the slide" in json.loads(body)["detail"]


def test_unreadable_slide_gets_a_clear_message(served):
    status, body = post(f"{served['url']}/infer/wsi_v2/mil_tumor_segmentation?image=broken&output=json",
                        {"wsi": json.dumps({"location": [0, 0], "size": [512, 512]})})
    assert status == 500, body[:500]
    detail = json.loads(body)["detail"]
    assert "broken.tif" in detail and "mil_tumor_segmentation" in detail, detail
