"""`python -m services.validator` / `integrator-validator`."""

from __future__ import annotations

from integrator.service import load_catalogue_or_exit, settings_or_exit
from integrator.topology import Topology
from integrator.worker import run_worker
from services.validator.handler import validation_handler


def main() -> None:
    settings = settings_or_exit()
    catalogue = load_catalogue_or_exit("validator", settings)
    topology = Topology.from_settings(settings)
    handler = validation_handler(catalogue, topology, settings.max_body_bytes)
    run_worker("validator", settings, topology.incoming, handler, settings.validator_port)


if __name__ == "__main__":
    main()
