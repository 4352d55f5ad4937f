"""``python -m carnet_dossier`` serves.

Other commands: ``seed-demo`` deposits the demo documents; ``new-master-key ID`` prints a
fresh master key line (``ID:<base64>``) for ``CARNET_MASTER_KEY_FILE``.
"""

from __future__ import annotations

import sys

from carnet_dossier.app import build
from carnet_dossier.settings import DossierSettings
from carnet_kit.server import run_service


def main() -> None:
    """Command-line entry point."""
    if sys.argv[1:2] == ["new-master-key"]:
        from carnet_kit.crypto import new_master_key_line

        if len(sys.argv) != 3 or not sys.argv[2] or ":" in sys.argv[2] or len(sys.argv[2]) > 64:
            print("usage: python -m carnet_dossier new-master-key ID  (ID: up to 64 characters, no colon)", file=sys.stderr)
            raise SystemExit(2)
        print(new_master_key_line(sys.argv[2]))
        return
    if sys.argv[1:2] == ["seed-demo"]:
        from carnet_dossier.seed import main as seed_main

        seed_main()
        return
    run_service("carnet-dossier", DossierSettings, build)


if __name__ == "__main__":
    main()
