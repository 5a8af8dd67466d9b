"""`python -m services.gateway` / `integrator-gateway`."""

from __future__ import annotations

from integrator.service import load_catalogue_or_exit, run_service, settings_or_exit
from services.gateway.app import serve


def main() -> None:
    settings = settings_or_exit()
    catalogue = load_catalogue_or_exit("gateway", settings)
    run_service("gateway", settings, lambda stopping: serve(settings, catalogue, stopping))


if __name__ == "__main__":
    main()
