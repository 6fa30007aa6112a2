"""Integration tests: nothing may come from the Hugging Face hub, and (in the subprocess that
proves it) the mapping tests can run with every framework unimportable."""

from __future__ import annotations

import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

FRAMEWORKS = ("torch", "gymnasium", "stable_baselines3", "transformers", "lightning",
              "pytorch_lightning", "lightning_fabric")

if os.environ.get("BLOCK_FRAMEWORKS_FOR_TEST") == "1":
    for name in FRAMEWORKS:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
