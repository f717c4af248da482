"""Registry errors (all from warden_common's tree)."""

from warden_common.errors import BadInput, Conflict, Forbidden, NotFound

__all__ = ["BadInput", "Conflict", "Forbidden", "NotFound"]
