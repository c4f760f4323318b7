"""The Hugging Face Hub: access checks and checkpoint pushes ([`access`]), and the model card ([`model_card`])."""

from .access import (
    REVISION_FORMAT,
    STAGING_DIR,
    CheckpointRevisionPusher,
    HubAccessError,
    check_hub_access,
    checkpoint_operations,
    download_checkpoint,
    hub_is_offline,
    parse_hub_reference,
    public_command,
    public_name,
)


__all__ = [
    "REVISION_FORMAT",
    "STAGING_DIR",
    "CheckpointRevisionPusher",
    "HubAccessError",
    "check_hub_access",
    "checkpoint_operations",
    "download_checkpoint",
    "hub_is_offline",
    "parse_hub_reference",
    "public_command",
    "public_name",
]
