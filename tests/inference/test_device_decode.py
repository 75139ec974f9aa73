"""Windows decoded on the inferer's device (the GPU path, run here on the CPU): the same maps as the workers'."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from monai_wsseg.inference.device_decode import DeviceWindows
from monai_wsseg.inference.engine import WSIInferer
from monai_wsseg.wsi.slide import open_slide
from monai_wsseg.wsi.tiff_writer import write_pyramidal_tiff
from tests.conftest import CMU_SLIDE, real_file, smooth_rgb
from tests.inference.test_engine import HALO, STRIDE, KnownFCN, full_mask

pytest.importorskip("openslide")


def _maps(path, mpp: float, decode: str, tissue=None):
    inferer = WSIInferer(KnownFCN(), mpp=mpp, stride=STRIDE, tile=128, halo=HALO, overlap=0.5, num_classes=2,
                         activation="none", num_workers=0, batch_size=3, progress=False, precision="fp32",
                         decode=decode)
    with open_slide(path, backend="openslide") as slide:
        return inferer(slide, tissue=full_mask(slide) if tissue is None else tissue)


@pytest.mark.parametrize("mpp", [0.5, 1.0])  # level 0, and level 1 read as it is
def test_device_decoded_maps_equal_the_workers_maps(slide_path, mpp):
    ours, theirs = _maps(slide_path, mpp, "device"), _maps(slide_path, mpp, "workers")
    assert ours.probabilities.shape == theirs.probabilities.shape and np.isfinite(ours.probabilities).all()
    assert np.array_equal(ours.probabilities, theirs.probabilities)  # same pixels, same maths


def test_aperio_slide_windows_equal_openslide():
    path = real_file(CMU_SLIDE.name)
    with open_slide(path, backend="openslide") as slide:
        inferer = WSIInferer(KnownFCN(), mpp=slide.mpp, stride=STRIDE, tile=256, halo=HALO, num_classes=2,
                             num_workers=0, progress=False)
        plan = inferer.plan(slide)
        windows = DeviceWindows(slide, plan, batch_size=5, device="cpu")
        assert len(windows) == -(-len(plan) // 5)
        batch, index, ok = next(iter(windows))
        assert ok.all() and batch.dtype == torch.uint8 and batch.shape == (5, 3, plan.window, plan.window)
        for k, i in enumerate(index.tolist()):
            expected = slide.read_region(tuple(plan.origins[i]), (plan.window, plan.window), mpp=plan.mpp)
            assert np.array_equal(batch[k].permute(1, 2, 0).numpy(), expected)


def test_refusals_and_a_corrupt_tile(slide_path, tmp_path, caplog):
    with pytest.raises(ValueError, match=r"slide.tif: decoding on the device reads a stored level as it is.*0.6875"):
        _maps(slide_path, 0.7, "device")
    tifffile.imwrite(tmp_path / "zlib.tif", smooth_rgb(300, 300), tile=(256, 256), compression="zlib",
                     resolution=(2e4, 2e4), resolutionunit="CENTIMETER")
    with pytest.raises(ValueError, match=r"zlib.tif: level 0 is not JPEG-tiled"):
        _maps(tmp_path / "zlib.tif", 0.5, "device")
    with pytest.raises(ValueError, match="decode must be 'workers' or 'device'"):
        WSIInferer(KnownFCN(), mpp=0.5, stride=STRIDE, tile=128, decode="gpu")
    # a damaged tile: its windows are no-data and named in the log, the others computed
    path = write_pyramidal_tiff(tmp_path / "bad.tif", smooth_rgb(512, 512, seed=3), 0.5)
    with tifffile.TiffFile(path) as tf:
        offset, count = tf.pages[0].dataoffsets[0], tf.pages[0].databytecounts[0]
    data = bytearray(path.read_bytes())
    data[offset + 2 : offset + count] = b"\x00" * (count - 2)  # keeps the start-of-image marker
    path.write_bytes(bytes(data))
    smap = _maps(path, 0.5, "device")
    assert smap.unread and (-HALO, -HALO, 160, 160) in smap.unread
    assert smap.computed.any() and not smap.computed[0, 0]
    assert "bad.tif: cannot decode window x=-16, y=-16" in caplog.text
