"""``python -m carnet_consent``: run the consent service until SIGTERM."""

from carnet_consent.app import build
from carnet_consent.settings import ConsentSettings
from carnet_kit.server import run_service


def main() -> None:
    """Entry point of the consent process."""
    run_service("carnet-consent", ConsentSettings, build)


if __name__ == "__main__":
    main()
