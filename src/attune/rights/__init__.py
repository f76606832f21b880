"""Rights registry and consent engine: parties, works, recordings, agreements, consent."""

from attune.rights.policy import Decision, Reason, decide

__all__ = ["Decision", "Reason", "decide"]
