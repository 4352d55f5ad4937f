"""``python -m carnet_dossier`` serves; ``python -m carnet_dossier seed-demo`` deposits the demo documents."""

from __future__ import annotations

import sys

from carnet_dossier.app import build
from carnet_dossier.settings import DossierSettings
from carnet_kit.server import run_service


def main() -> None:
    """Command-line entry point."""
    if sys.argv[1:2] == ["seed-demo"]:
        from carnet_dossier.seed import main as seed_main

        seed_main()
        return
    run_service("carnet-dossier", DossierSettings, build)


if __name__ == "__main__":
    main()
