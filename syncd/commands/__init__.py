"""One module per `syncd` sub-command: its arguments and a `run(args) -> int`.

Commands hold no logic of their own: they parse, call the layer that owns the
work, print, and map outcomes to the exit codes documented in `syncd --help`.
"""
