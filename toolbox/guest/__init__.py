"""Guest images: download, verify, cache and build them; the cloud-init seed ISO.

``images`` (CachedImage, ImageStore, default images, ``--image`` resolution), ``download``
(resumable, SHA-512 verified), ``archive`` (Debian's .tar.xz), ``build`` (offline build with
mmdebstrap; not imported here so ``python -m toolbox.guest.build`` runs cleanly), ``seed``
(NoCloud ISO with pycdlib).
"""

from toolbox.guest.download import DownloadResult, download
from toolbox.guest.images import CachedImage, ImageStore, validate_image_name
from toolbox.guest.seed import SeedConfig, write_seed_iso

__all__ = [
    "CachedImage",
    "DownloadResult",
    "ImageStore",
    "SeedConfig",
    "download",
    "validate_image_name",
    "write_seed_iso",
]
