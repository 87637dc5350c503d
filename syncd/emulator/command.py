"""Serve a local emulator of Box's API (regular API, upload API and OAuth token endpoint) on one port.

It answers with the status codes, error codes and JSON shapes of the live Box
service (where the live service differs from Box's OpenAPI spec, it follows
the live service; the choices it makes where Box is undocumented are listed
below, and in docs/EMULATOR.md). State (metadata in SQLite, file content on
disk) lives under --data and survives a restart, upload sessions and parts
included. It serves plain HTTP, and HTTPS on the same port with --tls-cert/--tls-key
or --tls-self-signed. It listens on loopback only unless --allow-remote says
otherwise. Fault knobs (all off by default) can also be changed at run time
with `PUT /_emulator/faults`.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl
    from pathlib import Path

    from syncd.emulator.tls import TlsFiles

ADMIN_TOKEN_ENV = "SYNCD_EMULATOR_ADMIN_TOKEN"

EPILOG = """\
examples:
  syncd emulator --port 8765 --data ./var/emulator
  syncd emulator --port 0 --data /tmp/box --min-chunked-size 1000 --part-sizes '*=1KiB'
  syncd emulator --port 8765 --data ./var/emulator --latency-ms 50 --bandwidth 2000000 \\
      --upload-rate-limit 240 --api-rate-limit 1000 --commit-202 2 --fail-rate 0.01 --seed 7
  syncd emulator --port 8443 --data ./var/emulator --tls-self-signed
      then: SSL_CERT_FILE=./var/emulator/tls/ca.pem (or REQUESTS_CA_BUNDLE / NODE_EXTRA_CA_CERTS)
  sudo syncd emulator --port 443 --data ./var/emulator --tls-self-signed
      with "127.0.0.1 api.box.com upload.box.com dl.boxcloud.com" in /etc/hosts: clients whose
      base URLs are fixed to https://api.box.com reach the emulator

on start it prints one line (https when TLS is on; ca=... with --tls-self-signed):
  syncd emulator listening: api=http://HOST:PORT/2.0 upload=http://HOST:PORT/api/2.0 token=http://HOST:PORT/oauth2/token [ca=FILE]

TLS: --tls-cert/--tls-key serve your certificate; --tls-self-signed [DIR] makes a throwaway CA
  and a server certificate for localhost, 127.0.0.1, ::1, api.box.com, upload.box.com,
  dl.boxcloud.com, app.box.com, account.box.com (plus --tls-name NAME ...) in DIR (default
  DATA/tls), reused on the next start while valid; trust DIR/ca.pem and nothing else changes.
  Either way the port answers HTTPS and plain HTTP alike (the first byte of a connection tells
  them apart), and absolute URLs in replies (session_endpoints, upload_url, download Location)
  use the scheme and Host of the request, or --public-url.

safety: the emulator trusts its callers (a fixed developer token, an admin API that rewrites
  its behaviour), so it listens on loopback addresses only: --host 0.0.0.0, a LAN address or a
  name resolving to one exits 2 with the reason, unless --allow-remote is given. --admin-token
  (or $SYNCD_EMULATOR_ADMIN_TOKEN) makes the admin API require "Authorization: Bearer TOKEN".

admin API (JSON) under /_emulator/ (no auth unless --admin-token):
  GET|PUT /faults (knobs in snake_case, plus reject_next {count,status,retry_after?,endpoint?,applied?};
  applied=true handles the request first and then answers the 5xx, as Box's 503 sometimes does;
  plus refuse {status: 401|403, seconds, endpoints?}: for that long every request (of those
  endpoints) answers 401 invalid_token, with every token grant refused 400 invalid_grant (revoked
  credentials; nothing spent), or 403 access_denied_insufficient_permissions; refuse: null ends it),
  GET /stats (requests per endpoint and status; bytes_received per endpoint, so
  bytes_received["sessions.upload_part"] counts the part bytes received), POST /stats/reset,
  POST /clock {"advance_seconds": N}, POST /tokens/expire,
  POST /oauth/tokens {"user_id"?}: a fresh access + refresh token pair, as the token endpoint
  answers it (start an OAuth client from it; refresh tokens are single use and rotate),
  POST /oauth/refresh-token {"user_id"?}: a refresh token alone,
  POST /jwt-keys {"kid","public_key_pem"}, POST /users {"name","login"}

downloads: GET /2.0/files/{id}/content[?version=ID] answers 302 with Location on a download URL
  {origin}/d/1/TOKEN/download (dl.boxcloud.com-style, same port, no auth needed) valid for 15
  minutes of emulator time; it serves GET/HEAD with Content-Length, ETag ("<sha1>"), Range
  (206, 416 with Content-Range: bytes */SIZE); expired 403, unknown 404. Clients that follow
  redirects see the bytes. Content is ready on commit: no 202 "not ready yet" is ever sent.

upload-session plan (boxsdk 10.18's create_file_upload_session_plan, upload_big_file_version):
  every session has session_endpoints.plan; POST it {"parts":[{"offset","size","sha512"}]} ->
  {"upload_session_id","hits":[{"offset","size","sha512","part_id"}],"misses":[...]}: hits are
  the parts of the file's current version with the same offset, size and SHA-512 (hashed
  from disk the first time asked, then kept); a new-file session has only misses. A part
  outside the file, a missing field or a bad sha512: 400 bad_request. A commit may list hit
  parts (part_id, offset, size); sha512 on every entry or none (else 400 bad_request); a hit
  of another file: 400 parts_mismatch. GET .../parts lists uploaded parts only, never hits.
  Part uploads also accept Digest: sha-512=<base64>.

choices where Box is undocumented or its sources disagree (REFERENCE.md sec. 7):
  - file 409s (upload, preflight, create session, rename) carry context_info.conflicts as ONE
    object (--file-conflicts array for the spec's form); POST /folders carries an ARRAY.
  - part re-upload / overlap: 416 range_overlaps_existing_part with context_info.conflicting_part
    (--part-overlap-status 409 for the spec's status).
  - part digest mismatch: 412 precondition_failed. Content-Range not fitting the session
    (offset not a multiple of part_size, wrong size, wrong total): 416
    requested_range_not_satisfiable. Missing/garbled Content-Range or Digest: 400 bad_request.
  - part digests: sha= (any case), sha-256= and sha-512= are verified; the part reply carries
    sha1 (hex) only, never sha512 (boxsdk would then send sha512 on some commit entries only).
  - commit order: sha512 on some entries only (400 bad_request) -> part list (400
    parts_mismatch, also for parts missing or not covering the file, or a hit of another
    file) -> whole-file digest (400 digest_mismatch) -> If-Match/If-None-Match (412) ->
    --commit-202 (202 with Retry-After and an empty body) -> unchanged content (202, no
    Retry-After) -> 201.
  - a commit repeated after success answers 201 with the same file; GET/PUT on a committed
    session answer 404; DELETE answers 204 after commit, 404 after abort.
  - a new-version commit whose content and name are the file's own answers 202 WITHOUT
    Retry-After and makes no version (boxsdk: "202 because the file did not change"; a 202
    with Retry-After means "retry"); the session is then finished and a repeated commit
    answers 201 with the unchanged file.
  - new versions answer 201 (--version-upload-status 200 for the spec's status). A direct
    version upload may carry the file part alone (no attributes), as the live service accepts.
  - upload sessions need >= --min-chunked-size bytes (exactly 20,000,000 is accepted by
    default); below it 400 file_size_too_small. part_size comes from --part-sizes.
  - session expiry (7 days), token and auth-code lifetimes follow the emulator clock
    (POST /_emulator/clock moves it); expired sessions answer 410 and their parts are freed.
  - upload-rate-limit counts direct uploads, version uploads and session creations (not parts);
    api-rate-limit counts every authenticated call; both use sliding 60 s windows of wall
    time. Retry-After is integer seconds.
  - name rules: 1-255 chars, no / or \\, no non-printable chars, not . or .., no trailing
    space; leading spaces accepted; uniqueness is case-insensitive across files and folders.
  - list parts: default limit 1000; folder items: default limit 100, max 1000, sort by name
    with folders first; on the last marker page next_marker is absent.
  - a direct upload holds its name while its body streams in: a second upload of the same
    name into the same folder meanwhile gets 409 name_temporarily_reserved.
  - never returned: 409 session_conflict (every create makes a new session),
    410 upload_failed (no part limit), 409 operation_blocked_temporary, 403 insufficient_scope.
    Session /log endpoints answer 404.
  - admin stats count a connection cut by --drop-rate under status "0".
  - GET /files/{id}/versions lists past versions only (not the current one), newest first.
  - DELETE /files/{id} moves the file to the trash (204); it then disappears from listings.
  - DELETE /folders/{id} moves the folder and everything below it to the trash (204); a folder
    holding anything needs ?recursive=true, else 400 folder_not_empty. The root folder "0"
    answers 403 access_denied_insufficient_permissions.
  - 401 carries WWW-Authenticate and a JSON error body (--unauthorized-body empty: no body,
    as seen live). The --token developer token does not expire by time;
    POST /_emulator/tokens/expire expires it (and every access token) until a restart.
  - as-user needs a token of an admin (the default user is one) or service account, else
    403 access_denied_insufficient_permissions; an unknown user id gives 400 bad_request.
  - each user has a private root folder "0"; items of other users answer 404; an upload
    session touched by another user answers 403 forbidden.
  - JWT: alg RS256/RS384/RS512, kid must name a registered key, aud
    https://api.box.com/oauth2/token, exp at most 60 s ahead of wall time (5 s skew), jti
    16-128 chars never reused; box_sub_type enterprise (--enterprise-id) or user.
  - --fail-rate / reject_next answer before the request has any effect (unless reject_next has
    applied=true); a random 503 carries Retry-After: 1. --drop-rate resets the connection
    at a random point of a request body, with no effect on state. No knob applies to the
    admin API.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the emulator's options (names are a contract, see DESIGN.md)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to bind; 0 picks a free one (default 8765)")
    parser.add_argument("--data", required=True, help="directory holding the state (SQLite + content)")
    parser.add_argument("--token", default="dev-token", help="developer token accepted as Bearer (default dev-token)")
    parser.add_argument("--public-url", default=None, metavar="ORIGIN",
                        help="origin used in absolute URLs (session_endpoints, preflight upload_url); "
                             "default: from the request's Host header")
    parser.add_argument("--client-id", default="syncd-emulator-client", help="OAuth client id")
    parser.add_argument("--client-secret", default="syncd-emulator-secret", help="OAuth client secret")
    parser.add_argument("--enterprise-id", default="1234567", help="enterprise id for client_credentials/JWT")
    parser.add_argument("--jwt-public-key", default=None, metavar="PEM_FILE",
                        help="public key verifying JWT assertions (with --jwt-key-id)")
    parser.add_argument("--jwt-key-id", default=None, metavar="KID", help="key id (kid) of --jwt-public-key")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow --host to be a non-loopback address (0.0.0.0, a LAN address); "
                             "without it such a --host exits 2")
    parser.add_argument("--admin-token", default=os.environ.get(ADMIN_TOKEN_ENV), metavar="TOKEN",
                        help=f"require this Bearer token on the /_emulator/ admin API "
                             f"(default: ${ADMIN_TOKEN_ENV}; unset: no auth)")
    tls = parser.add_argument_group("TLS (the port then answers HTTPS and plain HTTP alike)")
    tls.add_argument("--tls-cert", default=None, metavar="FILE",
                     help="PEM certificate (chain) to serve, with --tls-key")
    tls.add_argument("--tls-key", default=None, metavar="FILE", help="PEM private key of --tls-cert")
    tls.add_argument("--tls-self-signed", nargs="?", const="", default=None, metavar="DIR",
                     help="make a throwaway CA + server certificate in DIR (default DATA/tls, reused while "
                          "valid) and serve it; clients trust DIR/ca.pem (printed as ca= on the start line)")
    tls.add_argument("--tls-name", action="append", default=[], metavar="NAME",
                     help="extra DNS name or IP address for the --tls-self-signed certificate (repeatable)")
    compat = parser.add_argument_group("where Box's sources disagree (defaults follow the live API)")
    compat.add_argument("--file-conflicts", choices=("object", "array"), default="object",
                        help="shape of context_info.conflicts in file 409s (default object; the spec says array)")
    compat.add_argument("--part-overlap-status", type=int, choices=(416, 409), default=416,
                        help="status for a re-uploaded or overlapping part (default 416; the spec says 409)")
    compat.add_argument("--version-upload-status", type=int, choices=(201, 200), default=201,
                        help="status of POST /files/{id}/content (default 201; the spec says 200)")
    compat.add_argument("--unauthorized-body", choices=("json", "empty"), default="json",
                        help="401 body: a Box JSON error (default) or empty, as seen live")
    knobs = parser.add_argument_group("fault knobs (all off by default; also PUT /_emulator/faults)")
    knobs.add_argument("--latency-ms", type=float, default=0, metavar="N", help="delay added to every request")
    knobs.add_argument("--bandwidth", type=int, default=0, metavar="BYTES",
                       help="bytes/s per connection, each direction (0 = unlimited)")
    knobs.add_argument("--upload-rate-limit", type=int, default=0, metavar="N",
                       help="upload requests per minute per user, then 429 + Retry-After (Box: 240)")
    knobs.add_argument("--api-rate-limit", type=int, default=0, metavar="N",
                       help="calls per minute per user, then 429 + Retry-After (Box: about 1000)")
    knobs.add_argument("--commit-202", type=int, default=0, metavar="N",
                       help="the first N commits of each session answer 202 + Retry-After")
    knobs.add_argument("--commit-retry-after", type=int, default=1, metavar="S",
                       help="Retry-After seconds on those 202s (default 1)")
    knobs.add_argument("--fail-rate", type=float, default=0.0, metavar="F",
                       help="fraction of requests answered with a random 500/502/503")
    knobs.add_argument("--drop-rate", type=float, default=0.0, metavar="F",
                       help="fraction of requests with a body whose connection is cut mid-body")
    knobs.add_argument("--token-ttl", type=int, default=3600, metavar="S", help="access-token lifetime (default 3600)")
    knobs.add_argument("--max-file-size", type=int, default=0, metavar="BYTES",
                       help="larger files get 403 file_size_limit_exceeded (0 = no cap)")
    knobs.add_argument("--storage-quota", type=int, default=0, metavar="BYTES",
                       help="per-user storage; beyond it 403 storage_limit_exceeded (0 = unlimited)")
    knobs.add_argument("--min-chunked-size", type=int, default=20_000_000, metavar="BYTES",
                       help="smallest file accepted by upload sessions (default 20000000)")
    knobs.add_argument("--part-sizes", default="256MiB=8MiB,2GiB=32MiB,*=64MiB", metavar="TABLE",
                       help="part_size table MAX=PART,...,*=PART (default 256MiB=8MiB,2GiB=32MiB,*=64MiB)")
    knobs.add_argument("--seed", type=int, default=None, metavar="N", help="seed for the random faults")


def run(args: argparse.Namespace) -> int:
    """Start the emulator and serve until SIGTERM/SIGINT; returns the exit code."""
    import signal
    import sys
    import threading
    from pathlib import Path

    from syncd.emulator.auth import Authenticator, OAuthClient
    from syncd.emulator.app import EmulatorApp, load_public_key
    from syncd.emulator.clock import Clock
    from syncd.emulator.context import Compat, Context, PartSizeTable
    from syncd.emulator.faults import Faults, FaultSettings
    from syncd.emulator.server import serve
    from syncd.emulator.shapes import Shapes
    from syncd.emulator.store import (DEFAULT_ENTERPRISE_ID, DEFAULT_USER_ID, DEFAULT_USER_LOGIN,
                                      DEFAULT_USER_NAME, Store, User)

    try:
        settings = FaultSettings(
            latency_ms=args.latency_ms, bandwidth=args.bandwidth, upload_rate_limit=args.upload_rate_limit,
            api_rate_limit=args.api_rate_limit, commit_202=args.commit_202,
            commit_retry_after=args.commit_retry_after, fail_rate=args.fail_rate, drop_rate=args.drop_rate,
            token_ttl=args.token_ttl, max_file_size=args.max_file_size, storage_quota=args.storage_quota,
            min_chunked_size=args.min_chunked_size, seed=args.seed)
        faults = Faults(settings)
        part_sizes = PartSizeTable.parse(args.part_sizes)
        if bool(args.jwt_public_key) != bool(args.jwt_key_id):
            raise ValueError("--jwt-public-key and --jwt-key-id go together")
        pem = Path(args.jwt_public_key).read_text() if args.jwt_public_key else None
        if pem is not None:
            load_public_key(pem)
        if not args.token:
            raise ValueError("--token must not be empty")
        if args.admin_token == "":
            raise ValueError("--admin-token must not be empty")
        if (args.tls_cert is None) != (args.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        if args.tls_cert is not None and args.tls_self_signed is not None:
            raise ValueError("--tls-self-signed and --tls-cert/--tls-key are alternatives: give one of them")
        if args.tls_name and args.tls_self_signed is None:
            raise ValueError("--tls-name names hosts in the --tls-self-signed certificate: add --tls-self-signed")
        reason = None if args.allow_remote else remote_reason(args.host)
        if reason is not None:
            raise ValueError(f"refusing to listen on {args.host}: {reason}. The emulator trusts whoever reaches "
                             "it (a fixed developer token, an admin API that changes its behaviour), so it "
                             "listens on loopback only. Use --host 127.0.0.1 (or ::1), or pass --allow-remote "
                             "(better with --admin-token) to mean it")
    except (ValueError, OSError) as exc:
        print(f"syncd emulator: {exc}", file=sys.stderr)
        return 2

    data_dir = Path(args.data)
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        tls_files, context = _tls(args, data_dir)
    except (ValueError, OSError) as exc:  # tls.TlsError (a file that does not load), an unwritable DIR
        print(f"syncd emulator: {exc}", file=sys.stderr)
        return 2
    store = Store(data_dir)
    offset = store.get_meta("clock_offset")
    clock = Clock(float(offset) if offset else 0.0)
    store.purge_expired_sessions(clock.now())
    store.ensure_user(User(DEFAULT_USER_ID, DEFAULT_USER_NAME, DEFAULT_USER_LOGIN, DEFAULT_ENTERPRISE_ID,
                           "admin", clock.now()))
    auth = Authenticator(store, OAuthClient(args.client_id, args.client_secret, args.enterprise_id), clock.now,
                         lambda: faults.settings.token_ttl, DEFAULT_USER_ID,
                         empty_401_body=args.unauthorized_body == "empty")
    auth.register_developer_token(args.token)
    if pem is not None:
        store.save_jwt_key(args.jwt_key_id, pem)
    compat = Compat(file_conflicts=args.file_conflicts, part_overlap_status=args.part_overlap_status,
                    version_upload_status=args.version_upload_status, unauthorized_body=args.unauthorized_body)
    ctx = Context(store=store, shapes=Shapes(store), clock=clock, faults=faults, auth=auth, part_sizes=part_sizes,
                  compat=compat)
    app = EmulatorApp(ctx, args.public_url, args.admin_token)
    try:
        server = serve(app, args.host, args.port, context)
    except OSError as exc:
        print(f"syncd emulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    # Handlers first: whoever read the start line may signal us right away.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    display = f"[{host}]" if ":" in host else host
    origin = f"{'https' if context is not None else 'http'}://{display}:{port}"
    ca = f" ca={tls_files.ca.resolve()}" if tls_files is not None and tls_files.ca is not None else ""
    if ca:
        print(f"syncd emulator: TLS with a throwaway CA: trust {ca[4:]} (SSL_CERT_FILE, REQUESTS_CA_BUNDLE, "
              "NODE_EXTRA_CA_CERTS or curl --cacert); plain http:// works on the same port", file=sys.stderr)
    if args.allow_remote and args.admin_token is None:
        print("syncd emulator: warning: --allow-remote without --admin-token: anyone who reaches this port "
              "can change the emulator through /_emulator/", file=sys.stderr)
    print(f"syncd emulator listening: api={origin}/2.0 upload={origin}/api/2.0 token={origin}/oauth2/token{ca}",
          flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()
    return 0


def remote_reason(host: str) -> str | None:
    """Why binding `host` would reach beyond this machine; None for loopback addresses.

    A name is resolved: every address it gives must be loopback. A name that
    does not resolve is left to the bind, which fails with its own message.
    """
    try:
        addresses = {ipaddress.ip_address(host.strip("[]"))}
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None)
        except (socket.gaierror, UnicodeError):
            return None
        addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    if any(address.is_unspecified for address in addresses):
        return "that address means every network interface"
    outside = sorted(str(address) for address in addresses if not address.is_loopback)
    if outside:
        return f"not a loopback address ({', '.join(outside)})"
    return None


def _tls(args: argparse.Namespace, data_dir: "Path") -> "tuple[TlsFiles | None, ssl.SSLContext | None]":
    """The certificate to serve (given, or made by --tls-self-signed) and its context; none: plain HTTP only."""
    if args.tls_cert is None and args.tls_self_signed is None:
        return None, None
    # Imported only now: ssl and cryptography cost a plain-HTTP emulator memory for nothing.
    from pathlib import Path

    from syncd.emulator.tls import TlsFiles, self_signed, server_context

    if args.tls_cert is not None:
        files = TlsFiles(Path(args.tls_cert), Path(args.tls_key))
    else:
        names = tuple(args.tls_name)
        if args.host not in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "::"):
            names += (args.host.strip("[]"),)  # a specific address or name it was told to listen on
        files = self_signed(Path(args.tls_self_signed) if args.tls_self_signed else data_dir / "tls", names)
    return files, server_context(files)
