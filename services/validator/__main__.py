"""`python -m services.validator` / `integrator-validator`."""

from __future__ import annotations

import sys

from integrator.schemas import SchemaCatalogue, SchemaFileError
from integrator.service import settings_or_exit
from integrator.topology import Topology
from integrator.worker import run_worker
from services.validator.handler import validation_handler


def main() -> None:
    settings = settings_or_exit()
    try:
        catalogue = SchemaCatalogue.load(settings.schemas_dir, settings.strict_schemas)
    except SchemaFileError as exc:
        sys.exit(f"validator: {exc}")
    topology = Topology.from_settings(settings)
    run_worker("validator", settings, topology.incoming, validation_handler(catalogue, topology))


if __name__ == "__main__":
    main()
