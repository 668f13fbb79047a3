"""Where a search's Optuna study lives, shared by the launcher and the node (optuna is imported
only when a study is opened): an RDB URL (``search.storage``), else a JournalFile in the sweep's
folder, which is safe on a shared file system and needs no service. Never SQLite on a network
file system: its locks are not reliable there."""

from __future__ import annotations

from pathlib import Path

JOURNAL = "study.journal"
SEARCH_FILE = "search.json"  # in the sweep's folder, by its first trial: the study's name, storage and metric


def storage_of(search: dict | None, sweep_dir: Path) -> str:
    """The study's storage: the RDB URL, else the JournalFile in the sweep's folder."""
    return (search or {}).get("storage") or str(sweep_dir / JOURNAL)


def open_storage(storage: str):
    """An Optuna storage for a path (JournalFile) or a URL (RDB)."""
    import optuna

    if "://" in storage:
        return optuna.storages.RDBStorage(storage)
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(storage))
