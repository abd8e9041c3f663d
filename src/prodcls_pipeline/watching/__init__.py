"""Watch mode: the continuous loop's daemon, `prodcls watch`.

- `listing`: Which drop folders are new, and when one is complete (a `_READY` marker, or a
  listing unchanged for a quiet period).
- `lock`: One run at a time per DVC repository (an flock under `.dvc/tmp/`).
- `runner`: `dvc repro` as a child process, its outcome, and the git commit after it.
- `journal`: The JSON-lines log of every drop handled, and each run's full output.
- `loop`: The poll loop tying them together, and its stop on SIGINT/SIGTERM.

The names below are the area's public API: what code outside the area imports.
"""

from prodcls_pipeline.core.exports import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "journal": ["JOURNAL_FILE", "RunRecord", "read_records"],
        "listing": [
            "DEFAULT_POLL_S",
            "DEFAULT_QUIET_PERIOD_S",
            "SettleTracker",
            "new_drops",
        ],
        "lock": ["RunLock", "lock_path"],
        "loop": ["WatchSettings", "Watcher", "stop_on_signals"],
        "runner": ["OUTCOMES", "git_work_tree"],
    },
)
