"""``python -m carnet_notify``: run the notify service until SIGTERM."""

from carnet_kit.server import run_service
from carnet_notify.app import build
from carnet_notify.settings import NotifySettings


def main() -> None:
    """Entry point of the notify process."""
    run_service("carnet-notify", NotifySettings, build)


if __name__ == "__main__":
    main()
