"""``python -m carnet_imaging`` serves gRPC and the DICOM SCP."""

from __future__ import annotations

from carnet_imaging.app import build
from carnet_imaging.settings import ImagingSettings
from carnet_kit.server import run_service


def main() -> None:
    """Command-line entry point."""
    run_service("carnet-imaging", ImagingSettings, build)


if __name__ == "__main__":
    main()
