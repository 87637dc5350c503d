"""A short human summary of a loaded config, for ``syncd check-config`` (secrets stay masked)."""

from __future__ import annotations

import dataclasses

from syncd.config.model import Config, JwtAuth, OAuthAuth, PostgresJournalConfig
from syncd.config.secret import Secret
from syncd.config.units import format_duration, format_size


def summarize_config(config: Config) -> list[str]:
    """One line per fact worth confirming: where Box is, how syncd authenticates, what it watches.

    Secrets are described by where they come from (``env BOX_TOKEN``), never by value.
    """
    box = config.box
    auth = box.auth
    secrets = [f"{name} from {value.source}" for name, value in _fields_of(auth).items() if isinstance(value, Secret)]
    auth_line = f"auth: {auth.type}" + (f" ({', '.join(dict.fromkeys(secrets))})" if secrets else "")
    if isinstance(auth, OAuthAuth):
        auth_line += f", token store {auth.token_store}"
    if isinstance(auth, JwtAuth):
        auth_line += f", app config {auth.app_config}, as {auth.subject_type} {auth.subject_id or '(from the app config)'}"
    lines = [
        f"config: {config.source}",
        f"box: api {box.api_url}, upload {box.upload_url}, token {box.token_url}"
        + (f", as user {box.as_user}" if box.as_user else ""),
        auth_line,
        f"uploads: direct up to {format_size(box.direct_upload_max)}, {config.workers} workers "
        f"+ {config.small_file_workers} for small files, "
        f"{box.part_concurrency} parts at once, {box.uploads_per_minute} uploads/min",
        _journal_line(config),
    ]
    for watch in config.watches:
        after = watch.after_upload + (f" to {watch.archive_dir}" if watch.archive_dir else "")
        lines.append(
            f"watch {watch.name}: {watch.path} -> folder {watch.folder_id} "
            f"({'recursive' if watch.recursive else 'top level only'}, {watch.observer}"
            f"{' every ' + format_duration(watch.poll_interval) if watch.observer == 'polling' else ''}, "
            f"conflict {watch.conflict}, after upload {after})"
        )
    metrics = f"metrics: {config.metrics.listen}" if config.metrics.listen else "metrics: off"
    lines += [f"logging: {config.logging.format}, level {config.logging.level}", metrics]
    return lines


def _journal_line(config: Config) -> str:
    journal = config.journal
    if not isinstance(journal, PostgresJournalConfig):
        return f"journal: {journal} (SQLite)"
    password = f"password from {journal.password.source}" if journal.password else "no password (peer or certificate)"
    return (f"journal: PostgreSQL {journal.dsn} ({password}), lease {format_duration(journal.lease)}, "
            f"as host {config.host_id}")


def unverified_secrets(config: Config) -> list[str]:
    """For a config loaded without resolving secrets: one line per secret source saying what was
    checked of it without reading it (present, mode) and what could not be verified here."""
    secrets = {f"box.auth.{name}": value for name, value in _fields_of(config.box.auth).items()}
    if isinstance(config.journal, PostgresJournalConfig):
        secrets["journal.password"] = config.journal.password
    lines = [f"{key} from {value.source}: {value.check}"
             for key, value in secrets.items() if isinstance(value, Secret) and not value.resolved]
    return list(dict.fromkeys(lines))


def _fields_of(auth: object) -> dict[str, object]:
    return {field.name: getattr(auth, field.name) for field in dataclasses.fields(auth)}  # type: ignore[arg-type]
