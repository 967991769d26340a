"""Every resource the operator serves: importing this module registers the Kopf handlers of each, and the
operator's start and stop (`controller.startup`)."""

from .connections import handlers as connections
from .controller import startup
from .deploytokens import handlers as deploytokens
from .runners import handlers as runners

__all__ = ["connections", "deploytokens", "runners", "startup"]
