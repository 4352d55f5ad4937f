"""``python -m carnet_imaging`` serves gRPC and the DICOM SCP; ``python -m carnet_imaging seed-demo``
registers the demo PACS."""

from __future__ import annotations

import sys

from carnet_imaging.app import build
from carnet_imaging.settings import ImagingSettings
from carnet_kit.server import run_service


def main() -> None:
    """Command-line entry point; ``seed-demo`` registers the demo PACS in the running platform."""
    if sys.argv[1:2] == ["seed-demo"]:
        from carnet_imaging.seed import main as seed_main

        seed_main()
        return
    run_service("carnet-imaging", ImagingSettings, build)


if __name__ == "__main__":
    main()
