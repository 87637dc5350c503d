"""Set up and check Box credentials.

`syncd auth login` runs the OAuth 2.0 authorization-code bootstrap for a
config whose `box.auth.type` is `oauth`: it prints the URL to open, then
either receives Box's redirect on a loopback listener (the app's redirect URI
must be `http://127.0.0.1:PORT/callback`) or takes the code you paste
(`--code`, or `-` to read it from stdin). The refresh token is stored in
`box.auth.token_store` with mode 0600.

`syncd auth check` asks Box who the configured credentials are, whatever the
auth type, and says so (or why not).
"""

from __future__ import annotations

import argparse
import sys

from syncd.commands.common import (
    EXIT_FAILURE, EXIT_OK, EXIT_USAGE, add_config_argument, add_json_argument, load, print_json,
)

EPILOG = """examples:
  syncd auth login -c /etc/syncd/syncd.yaml --port 8719     # then open the printed URL
  syncd auth login -c /etc/syncd/syncd.yaml --code -        # paste the code from the redirect
  syncd auth check -c /etc/syncd/syncd.yaml

exit codes: 0 done; 1 Box refused (the reason is printed); 2 invalid configuration or arguments.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="auth_command", metavar="ACTION", required=True)
    login = sub.add_parser("login", help="OAuth 2.0 authorization-code bootstrap")
    add_config_argument(login)
    add_json_argument(login)
    login.add_argument("--port", type=int, default=0,
                       help="loopback port for the redirect listener (must match the app's redirect URI)")
    login.add_argument("--code", metavar="CODE", help="exchange this code instead of listening ('-' reads stdin)")
    login.add_argument("--redirect-uri", help="redirect URI registered for the app, when pasting a code")
    login.add_argument("--authorize-url", help="authorize page (default: Box's, or the emulator's)")
    login.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the redirect")
    check = sub.add_parser("check", help="verify that the configured credentials work")
    add_config_argument(check)
    add_json_argument(check)


def run(args: argparse.Namespace) -> int:
    config = load(args, resolve_secrets=True)
    return _login(args, config) if args.auth_command == "login" else _check(args, config)


def _check(args: argparse.Namespace, config) -> int:
    from syncd.box import BoxError
    from syncd.service.box_connection import connect_box
    from syncd.logs import register_secret

    for secret in config.secrets:
        register_secret(secret)
    box = connect_box(config, workers=1)
    try:
        user = box.client.get_current_user()
    except BoxError as exc:
        print(f"syncd: the {config.box.auth.type} credentials do not work: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        box.close()
    if args.json:
        print_json({"authenticated": True, "auth_type": config.box.auth.type, "as_user": config.box.as_user,
                    "user": {key: user.get(key) for key in ("id", "name", "login")}})
        return EXIT_OK
    print(f"authenticated as {user.get('name')} <{user.get('login')}> (user id {user.get('id')}) "
          f"using {config.box.auth.type}" + (f", acting as user {config.box.as_user}" if config.box.as_user else ""))
    return EXIT_OK


def _login(args: argparse.Namespace, config) -> int:
    from syncd.commands.auth_login import (
        AuthorizationDenied, RedirectListener, authorize_url, default_authorize_url, new_state,
    )
    from syncd.box import BoxError, OAuthRefreshAuth, TokenStore
    from syncd.config import OAuthAuth

    auth = config.box.auth
    if not isinstance(auth, OAuthAuth):
        print(f"syncd auth login: box.auth.type is {auth.type!r}; login is for 'oauth' "
              "(use `syncd auth check` for the other types)", file=sys.stderr)
        return EXIT_USAGE
    base = args.authorize_url or default_authorize_url(config.box.api_url)
    state = new_state()
    try:
        if args.code:
            code = sys.stdin.readline().strip() if args.code == "-" else args.code
            redirect = args.redirect_uri or "http://127.0.0.1/callback"
            print(f"open this URL, approve, and take `code` from the redirect:\n  "
                  f"{authorize_url(base, auth.client_id, redirect, state)}", file=sys.stderr)
        else:
            with RedirectListener(state, port=args.port) as listener:
                print(f"open this URL in a browser and approve syncd:\n  "
                      f"{authorize_url(base, auth.client_id, listener.redirect_uri, state)}\n"
                      f"waiting for the redirect on {listener.redirect_uri} ...", file=sys.stderr, flush=True)
                code = listener.wait(args.timeout)
        OAuthRefreshAuth.from_authorization_code(code, auth.client_id, auth.client_secret.reveal(),
                                                 TokenStore(auth.token_store), token_url=config.box.token_url)
    except (AuthorizationDenied, TimeoutError, BoxError) as exc:
        print(f"syncd auth login: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print_json({"token_store": str(auth.token_store)})
    else:
        print(f"tokens stored in {auth.token_store} (mode 0600); `syncd auth check` verifies them")
    return EXIT_OK
