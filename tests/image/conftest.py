"""The SD image's parts that can be tested without building it: image-build/imagebuild is importable from here."""

import sys

from tests.conftest import REPO

IMAGE_BUILD = REPO / "image-build"
ROOTFS = IMAGE_BUILD / "rootfs"  # copied over the image's root file system
BOOTFS = IMAGE_BUILD / "bootfs"  # copied onto the image's FAT boot partition

if str(IMAGE_BUILD) not in sys.path:
    sys.path.insert(0, str(IMAGE_BUILD))
