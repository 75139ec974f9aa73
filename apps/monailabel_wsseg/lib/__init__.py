"""Components of the monai-wsseg MONAI Label app."""
