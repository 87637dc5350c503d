"""Everything that talks to Box, built from the configuration (daemon, push, auth check)."""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass

from syncd.box import (
    Auth,
    BoxClient,
    ClientCredentialsAuth,
    DeveloperTokenAuth,
    FolderIdStore,
    FolderTree,
    JWTAuth,
    OAuthRefreshAuth,
    RateLimits,
    TokenStore,
    Uploader,
    WindowStore,
)
from syncd.config import ClientCredentialsAuth as CcgConfig
from syncd.config import Config
from syncd.config import DeveloperTokenAuth as DevTokenConfig
from syncd.config import JwtAuth as JwtConfig
from syncd.config import OAuthAuth as OAuthConfig
from syncd.journal import Journal
from syncd.logs import forget_secret, register_secret


@dataclass
class BoxConnection:
    """Everything that talks to Box, built from `config.box`."""

    client: BoxClient
    uploader: Uploader
    folders: FolderTree

    def close(self) -> None:
        self.client.close()


class JournalFolderIds:
    """FolderTree's FolderIdStore kept in the journal, so resolved sub-folder ids outlive
    the process (syncd.box knows nothing of the journal; this adapter joins the two)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def get(self, parent_id: str, name_key: str) -> str | None:
        """The recorded id of folder ``name_key`` under ``parent_id``, or None."""
        return self.journal.box_folder_id(parent_id, name_key)

    def put(self, parent_id: str, name_key: str, folder_id: str) -> None:
        """Record (or replace) the id of folder ``name_key`` under ``parent_id``."""
        self.journal.save_box_folder_id(parent_id, name_key, folder_id)

    def forget(self, folder_id: str | None) -> None:
        """Drop the entry naming ``folder_id`` and every entry below it (everything when None)."""
        self.journal.forget_box_folder(folder_id)


class RuntimeSecrets:
    """Tokens Box hands out while syncd runs, registered with the log redactor as they arrive.

    Only the latest `keep` stay registered: refresh tokens rotate and access tokens
    expire every hour, and the redactor's pattern must not grow for the life of the
    process (a token that old is dead; the newest ones are what a log line could hold).
    """

    def __init__(self, keep: int = 16) -> None:
        self._keep = keep
        self._recent: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._lock = threading.Lock()

    def add(self, token: str) -> None:
        register_secret(token)
        with self._lock:
            self._recent[token] = None
            self._recent.move_to_end(token)
            expired = [self._recent.popitem(last=False)[0] for _ in range(len(self._recent) - self._keep)]
        for old in expired:
            forget_secret(old)

    def __len__(self) -> int:
        with self._lock:
            return len(self._recent)


#: The process's run-time tokens (one Box connection per process, or a few sharing it).
RUNTIME_SECRETS = RuntimeSecrets()


def build_auth(config: Config) -> Auth:
    """The syncd.box auth object for the configured method; every token it obtains at run time
    is registered with the log redactor the moment it arrives (`RUNTIME_SECRETS`)."""
    auth = _auth_for(config)
    auth.on_token = RUNTIME_SECRETS.add
    return auth


def _auth_for(config: Config) -> Auth:
    box = config.box
    auth = box.auth
    if isinstance(auth, DevTokenConfig):
        return DeveloperTokenAuth(auth.token.reveal(), as_user=box.as_user)
    if isinstance(auth, OAuthConfig):
        return OAuthRefreshAuth(auth.client_id, auth.client_secret.reveal(), TokenStore(auth.token_store),
                                token_url=box.token_url, as_user=box.as_user)
    if isinstance(auth, CcgConfig):
        return ClientCredentialsAuth(auth.client_id, auth.client_secret.reveal(), subject_type=auth.subject_type,
                                     subject_id=auth.subject_id, token_url=box.token_url, as_user=box.as_user)
    if isinstance(auth, JwtConfig):
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        passphrase = auth.private_key_passphrase.reveal().encode() if auth.private_key_passphrase else None
        key = load_pem_private_key(auth.private_key.reveal().encode(), passphrase)
        return JWTAuth(auth.client_id, auth.client_secret.reveal(), key_id=auth.public_key_id, private_key=key,
                       subject_type=auth.subject_type, subject_id=auth.subject_id, token_url=box.token_url,
                       as_user=box.as_user)
    raise TypeError(f"unknown auth configuration {type(auth).__name__}")


def connect_box(config: Config, *, workers: int | None = None, folder_ids: FolderIdStore | None = None,
                window_store: WindowStore | None = None) -> BoxConnection:
    """A client, uploader and folder cache for `config`, its pool sized to the concurrency.

    The keep-alive pool holds a connection for every request that can be in flight at
    once, so none is opened and closed per request: each general worker's parts
    (`workers`, default the config's, x `box.part_concurrency`), each small-file
    worker's upload (the daemon's `small_file_workers`; none when `workers` is given,
    as `push` and `auth` do), and 2 for the calls beside them (credentials check,
    folders). `folder_ids` keeps the sub-folder ids FolderTree resolves (the daemon
    passes `JournalFolderIds`); without it they live in memory for the life of the process.
    `window_store` keeps the Box rate windows (the hosts' shared one on a PostgreSQL journal;
    default: this process's memory).
    """
    box = config.box
    small_lane = config.small_file_workers if workers is None else 0
    concurrency = (workers or config.workers) * box.part_concurrency + small_lane + 2
    client = BoxClient(
        build_auth(config),
        api_url=box.api_url,
        upload_url=box.upload_url,
        concurrency=concurrency,
        timeout=(box.connect_timeout, box.read_timeout),
        rate_limits=RateLimits(api_calls_per_minute=box.calls_per_minute, uploads_per_minute=box.uploads_per_minute),
        window_store=window_store,
        # The loader refuses verify_tls: false unless every Box URL is loopback, and the
        # transport keeps verifying any non-loopback host whatever it is given.
        verify=box.verify_tls,
    )
    uploader = Uploader(client, chunked_threshold=box.direct_upload_max, concurrency=box.part_concurrency)
    return BoxConnection(client, uploader, FolderTree(client, folder_ids))
