"""Maps the io tests write: a 2000 x 1500 px slide at 8 px per cell, with discs, rings, holes and no data."""

from __future__ import annotations

import numpy as np
import shapely

from monai_wsseg.inference.engine import SlideMap

SLIDE_W, SLIDE_H, SLIDE_MPP = 2000, 1500, 0.5
D = 8  # level-0 pixels per map cell
MAP_H, MAP_W = -(-SLIDE_H // D), -(-SLIDE_W // D)  # 188 x 250; the last row is half outside the slide


def cell_grid() -> tuple[np.ndarray, np.ndarray]:
    """Column and row index of every map cell, ``(MAP_H, MAP_W)`` each."""
    return np.meshgrid(np.arange(MAP_W), np.arange(MAP_H))


def disc(cx: float, cy: float, r: float) -> np.ndarray:
    x, y = cell_grid()
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def one_class_map(slide: str) -> SlideMap:
    """A disc, a ring with a hole, a block in the slide's bottom-right corner, and no-data columns."""
    p = np.full((MAP_H, MAP_W), 0.1, dtype=np.float32)
    p[disc(60, 50, 25)] = 0.9
    p[disc(170, 100, 30) & ~disc(170, 100, 12)] = 0.8
    p[170:, 230:] = 0.7
    p[:, :10] = np.nan
    return SlideMap(slide, p[None], D, SLIDE_MPP * D)


def three_class_map(slide: str) -> tuple[SlideMap, np.ndarray]:
    """Background / tumor / stroma: a stroma ring whose hole holds a background lake with a tumor island."""
    cls = np.zeros((MAP_H, MAP_W), dtype=np.int64)
    cls[disc(120, 90, 45) & ~disc(120, 90, 20)] = 2
    cls[disc(120, 90, 10)] = 1
    cls[disc(40, 40, 15)] = 1
    p = np.full((3, MAP_H, MAP_W), 0.15, dtype=np.float32)
    np.put_along_axis(p, cls[None], 0.7, axis=0)
    p[:, :, 240:] = np.nan
    cls[:, 240:] = -1
    return SlideMap(slide, p, D, SLIDE_MPP * D), cls


def rasterise(geometries, shape_hw: tuple[int, int], d: int, dims: tuple[int, int] | None) -> np.ndarray:
    """Cells whose centre (of the part inside the slide) lies in any of the geometries."""
    h, w = shape_hw
    w0, h0 = dims if dims else (w * d, h * d)
    xs = (np.arange(w) * d + np.minimum((np.arange(w) + 1) * d, w0)) / 2
    ys = (np.arange(h) * d + np.minimum((np.arange(h) + 1) * d, h0)) / 2
    gx, gy = np.meshgrid(xs, ys)
    out = np.zeros(shape_hw, dtype=bool)
    for g in geometries:
        out |= shapely.contains_xy(g, gx, gy)
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())
