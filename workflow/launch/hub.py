"""The model hub as this machine sees it: a hub id's place in the local cache, whether the hub is
switched off (``HF_HUB_OFFLINE``) or reachable. The cache's folder layout is read directly
(``models--{org}--{name}/refs/main`` names a snapshot): no huggingface_hub import at start-up."""

from __future__ import annotations

import os
import re
from pathlib import Path

TIMEOUT_S = 3
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
ON = ("1", "true", "yes", "on")


def offline() -> bool:
    """``HF_HUB_OFFLINE`` is set: nothing is downloaded here, nor by the jobs that inherit it."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ON


def cache_dir() -> Path:
    """``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def cached(hub_id: str) -> bool:
    """The hub id's default revision is in the cache with its config: what an offline
    ``from_pretrained`` loads."""
    folder = cache_dir() / ("models--" + hub_id.replace("/", "--"))
    try:
        revision = (folder / "refs" / "main").read_text().strip()
    except OSError:
        return False
    return (folder / "snapshots" / revision / "config.json").is_file()


def reachable(hub_id: str) -> bool:
    import urllib.request

    try:
        request = urllib.request.Request(f"https://huggingface.co/api/models/{hub_id}", method="HEAD")
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as reply:
            return reply.status == 200
    except (OSError, ValueError):
        return False


def download_command(hub_id: str, local: bool = False) -> str:
    """The command that fetches a model with huggingface_hub's CLI, ``hf`` (0.34 on; 1.0 removed
    ``huggingface-cli``): into the hub cache, or (``local``) into ./<hub id>."""
    return f"hf download {hub_id}" + (f" --local-dir ./{hub_id}" if local else "")
