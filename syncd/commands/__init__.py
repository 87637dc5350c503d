"""One module per `syncd` sub-command: its arguments and a `run(args) -> int`.

Commands parse, call the layer that owns the work, print, and map outcomes to
the exit codes documented in `syncd --help`. Work that only one command does
lives beside it, named after it: `status_report` (what `syncd status` shows),
`push_files` and `push_progress` (`syncd push`), `auth_login` (the OAuth
bootstrap of `syncd auth login`). `emulator` is `syncd emulator`, the one
client module that imports the emulator package.
"""
