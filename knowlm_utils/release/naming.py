"""Small helpers shared by the release modules that must not import torch (the CLI imports
them to register its commands): file-name conventions and lists of names in messages."""

from __future__ import annotations

# pickled checkpoints: never hashed as files, loaded only through torch.load(weights_only=True)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
MANIFEST_NAME = "knowlm-release.json"


def few_names(names: list[str], k: int = 3) -> str:
    """``"a, b, c and 4 more"``."""
    more = f" and {len(names) - k} more" if len(names) > k else ""
    return ", ".join(names[:k]) + more


__all__ = ["PICKLE_SUFFIXES", "MANIFEST_NAME", "few_names"]
