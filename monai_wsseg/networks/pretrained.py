"""ImageNet weights for the ResNet backbones by name, from torchvision's catalogue.

Paper A initialises its ResNet from ImageNet, and so does paper B's DeepLabV3+ encoder. A network takes
``pretrained``:

* ``None`` — random initialisation (or ``pretrained_path``, a local ``.pth`` file);
* ``"imagenet"`` — torchvision's ``IMAGENET1K_V1`` weights of the backbone: read from torch's cache
  (``torch.hub.get_dir()/checkpoints``), downloaded there when missing; offline, a ``FileNotFoundError``
  names the file to fetch and where to put it;
* ``"imagenet_if_cached"`` — the ImageNet weights when they are already in the cache, else random
  initialisation with a warning: never downloads (the paper profiles' default, so that tests and offline
  machines run as they are); a ``pretrained_path`` given beside it wins.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

__all__ = ["PRETRAINED_CHOICES", "imagenet_cache_path", "imagenet_url", "resolve_pretrained"]

logger = logging.getLogger(__name__)

PRETRAINED_CHOICES: tuple[str, ...] = ("imagenet", "imagenet_if_cached")


def imagenet_url(backbone: str) -> str:
    """The URL of torchvision's ``IMAGENET1K_V1`` weights of ``backbone`` (e.g. ``"resnet50"``)."""
    from torchvision.models import get_model_weights

    try:
        weights = get_model_weights(backbone)
    except (KeyError, ValueError):
        raise ValueError(f"no ImageNet weights are known for backbone {backbone!r}") from None
    return str(weights["IMAGENET1K_V1"].url)


def imagenet_cache_path(backbone: str) -> Path:
    """Where torch keeps (or would keep) the ImageNet weights of ``backbone``."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(imagenet_url(backbone))


def resolve_pretrained(
    pretrained: str | None, pretrained_path: str | os.PathLike | None, backbone: str
) -> Path | None:
    """The weights file a network starts from, or ``None`` for random initialisation.

    Args:
        pretrained: ``None``, ``"imagenet"`` or ``"imagenet_if_cached"`` (see the module docstring).
        pretrained_path: a local weights file; exclusive with ``"imagenet"``, and taken instead of
            ``"imagenet_if_cached"``.
        backbone: torchvision name of the ResNet.

    Raises:
        ValueError: an unknown ``pretrained``, or both ``pretrained`` and ``pretrained_path`` given.
        FileNotFoundError: ``"imagenet"`` weights neither cached nor downloadable; the message names the URL
            and the cache file.
    """
    if pretrained is None or pretrained == "":
        return None if pretrained_path is None else Path(pretrained_path)
    if pretrained not in PRETRAINED_CHOICES:
        raise ValueError(f"pretrained must be one of {', '.join(PRETRAINED_CHOICES)} or null, got {pretrained!r}")
    if pretrained_path is not None:
        if pretrained == "imagenet_if_cached":  # a soft default: a file the user names wins
            return Path(pretrained_path)
        raise ValueError(f"give pretrained ({pretrained!r}) or pretrained_path ({pretrained_path}), not both")
    cached = imagenet_cache_path(backbone)
    if cached.is_file():
        logger.info("%s: ImageNet weights from %s", backbone, cached)
        return cached
    if pretrained == "imagenet_if_cached":
        logger.warning("%s: ImageNet weights not in %s; random initialisation (pretrained: \"imagenet\" "
                       "downloads them)", backbone, cached)
        return None
    url = imagenet_url(backbone)
    try:
        import torch.hub

        cached.parent.mkdir(parents=True, exist_ok=True)
        # torch writes a temporary file beside the target and renames it: no partial file under that name
        torch.hub.download_url_to_file(url, str(cached), progress=True)
    except (OSError, ValueError) as exc:  # URLError is an OSError: offline, proxy, DNS
        raise FileNotFoundError(
            f"{cached}: ImageNet weights of {backbone} not found and not downloadable "
            f"({type(exc).__name__}: {exc}); fetch {url} and put it there, or set pretrained_path"
        ) from None
    return cached
