"""What changed between two configs, for a SIGHUP reload (pure logic)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from syncd.config.model import Config, WatchConfig

# The one list of what a SIGHUP does with each top-level setting (a test checks that every
# key of the config file is in exactly one of the two). The daemon applies the first set
# in place; the second is built once at start (the Box connection and its pool, the
# journal and its lock, the worker threads, the metrics listener), so a change there is
# reported as waiting for a restart instead of being half-applied.
APPLIED_ON_RELOAD = frozenset({"watches", "shutdown_timeout", "scan_interval", "retry", "readiness", "logging",
                               "alerts", "health", "retention"})
RESTART_REQUIRED = frozenset({"box", "journal", "workers", "small_file_workers", "metrics", "host_id"})


@dataclass(frozen=True)
class FieldChange:
    """One setting that differs: its key path and the old and new values (secrets stay masked)."""

    key: str
    old: object
    new: object

    def __str__(self) -> str:
        return f"{self.key}: {self.old!r} -> {self.new!r}"


@dataclass(frozen=True)
class WatchChange:
    """A watch present in both configs (same path) whose settings differ."""

    path: Path
    old: WatchConfig
    new: WatchConfig
    fields: tuple[FieldChange, ...]


@dataclass(frozen=True)
class ConfigChanges:
    """Everything a reload has to apply; watches are matched by their folder path."""

    watches_added: tuple[WatchConfig, ...]
    watches_removed: tuple[WatchConfig, ...]
    watches_changed: tuple[WatchChange, ...]
    settings_changed: tuple[FieldChange, ...]

    @property
    def is_empty(self) -> bool:
        """True when the two configs behave the same."""
        return not (self.watches_added or self.watches_removed or self.watches_changed or self.settings_changed)

    @property
    def restart_required(self) -> tuple[str, ...]:
        """Changed keys that a reload cannot apply (the daemon must be restarted for them)."""
        return tuple(c.key for c in self.settings_changed if c.key.split(".")[0] in RESTART_REQUIRED)

    def describe(self) -> list[str]:
        """One human-readable line per change, for the reload log event."""
        lines = [f"watch added: {w.name} ({w.path} -> folder {w.folder_id})" for w in self.watches_added]
        lines += [f"watch removed: {w.name} ({w.path})" for w in self.watches_removed]
        for change in self.watches_changed:
            lines += [f"watch {change.new.name}: {field}" for field in change.fields]
        lines += [f"setting changed: {field}" for field in self.settings_changed]
        return lines


def diff_configs(old: Config, new: Config) -> ConfigChanges:
    """List what differs between *old* and *new* (neither is modified)."""
    old_watches = {w.path: w for w in old.watches}
    new_watches = {w.path: w for w in new.watches}
    added = tuple(w for path, w in new_watches.items() if path not in old_watches)
    removed = tuple(w for path, w in old_watches.items() if path not in new_watches)
    changed = tuple(
        WatchChange(path, old_watches[path], watch, tuple(_field_changes(old_watches[path], watch, "")))
        for path, watch in new_watches.items()
        if path in old_watches and old_watches[path] != watch
    )
    settings: list[FieldChange] = []
    for field in dataclasses.fields(Config):
        if field.name == "watches" or not field.compare:
            continue
        before, after = getattr(old, field.name), getattr(new, field.name)
        if before != after:
            settings.extend(_field_changes(before, after, field.name) if dataclasses.is_dataclass(before)
                            and type(before) is type(after) else [FieldChange(field.name, before, after)])
    return ConfigChanges(added, removed, changed, tuple(settings))


def _field_changes(old: object, new: object, prefix: str) -> list[FieldChange]:
    """Leaf-level differences between two dataclasses of the same type."""
    changes: list[FieldChange] = []
    for field in dataclasses.fields(old):  # type: ignore[arg-type]
        key = f"{prefix}.{field.name}" if prefix else field.name
        before, after = getattr(old, field.name), getattr(new, field.name)
        if before == after:
            continue
        if dataclasses.is_dataclass(before) and type(before) is type(after):
            changes.extend(_field_changes(before, after, key))
        else:
            changes.append(FieldChange(key, before, after))
    return changes
