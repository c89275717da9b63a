"""Provisioning a guest over SSH: install the engine, secure it with TLS, start it, probe it."""

from toolbox.provision.engine import EngineSource, engine_config
from toolbox.provision.steps import (
    ProvisionContext,
    ProvisionReport,
    Step,
    StepFailed,
    StepResult,
    provision,
    regenerate_certs,
    run_steps,
)

__all__ = [
    "EngineSource",
    "ProvisionContext",
    "ProvisionReport",
    "Step",
    "StepFailed",
    "StepResult",
    "engine_config",
    "provision",
    "regenerate_certs",
    "run_steps",
]
