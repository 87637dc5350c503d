"""Serve a local emulator of Box's API (regular API, upload API and OAuth token endpoint) on one port.

It answers with the status codes, error codes and JSON shapes of the live Box
service (where the live service differs from Box's OpenAPI spec, it follows
the live service; the choices it makes where Box is undocumented are listed
below). State
(metadata in SQLite, file content on disk) lives under --data and survives a
restart, upload sessions and parts included. Fault knobs (all off by default)
can also be changed at run time with `PUT /_emulator/faults`.
"""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  syncd emulator --port 8765 --data ./var/emulator
  syncd emulator --port 0 --data /tmp/box --min-chunked-size 1000 --part-sizes '*=1KiB'
  syncd emulator --port 8765 --data ./var/emulator --latency-ms 50 --bandwidth 2000000 \\
      --upload-rate-limit 240 --api-rate-limit 1000 --commit-202 2 --fail-rate 0.01 --seed 7

on start it prints one line:
  syncd emulator listening: api=http://HOST:PORT/2.0 upload=http://HOST:PORT/api/2.0 token=http://HOST:PORT/oauth2/token

admin API (no auth, JSON) under /_emulator/:
  GET|PUT /faults (knobs in snake_case, plus reject_next {count,status,retry_after?,endpoint?,applied?};
  applied=true handles the request first and then answers the 5xx, as Box's 503 sometimes does),
  GET /stats, POST /stats/reset, POST /clock {"advance_seconds": N}, POST /tokens/expire,
  POST /oauth/refresh-token {"user_id"?}, POST /jwt-keys {"kid","public_key_pem"},
  POST /users {"name","login"}

choices where Box is undocumented or its sources disagree (REFERENCE.md sec. 7):
  - file 409s (upload, preflight, create session, rename) carry context_info.conflicts as ONE
    object (--file-conflicts array for the spec's form); POST /folders carries an ARRAY.
  - part re-upload / overlap: 416 range_overlaps_existing_part with context_info.conflicting_part
    (--part-overlap-status 409 for the spec's status).
  - part digest mismatch: 412 precondition_failed. Content-Range not fitting the session
    (offset not a multiple of part_size, wrong size, wrong total): 416
    requested_range_not_satisfiable. Missing/garbled Content-Range or Digest: 400 bad_request.
  - part digests: sha= (any case) and sha-256= are verified; the part reply's sha1 is hex.
  - commit order: part list (400 parts_mismatch, also for parts missing or not covering the
    file) -> whole-file digest (400 digest_mismatch) -> If-Match/If-None-Match (412) ->
    --commit-202 (202 with Retry-After and an empty body) -> 201.
  - a commit repeated after success answers 201 with the same file; GET/PUT on a committed
    session answer 404; DELETE answers 204 after commit, 404 after abort.
  - new versions answer 201 (--version-upload-status 200 for the spec's status).
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
  - GET /files/{id}/content streams the bytes with 200 (no redirect to a download host).
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
    except (ValueError, OSError) as exc:
        print(f"syncd emulator: {exc}", file=sys.stderr)
        return 2

    data_dir = Path(args.data)
    data_dir.mkdir(parents=True, exist_ok=True)
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
    app = EmulatorApp(ctx, args.public_url)
    try:
        server = serve(app, args.host, args.port)
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
    origin = f"http://{display}:{port}"
    print(f"syncd emulator listening: api={origin}/2.0 upload={origin}/api/2.0 token={origin}/oauth2/token",
          flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()
    return 0
