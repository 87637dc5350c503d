# `syncd emulator`: the local Box API emulator's command. Its options, help and entry
# point are the emulator's own (syncd.emulator.command); this is the one client module
# that imports the emulator, which ships with syncd but shares no code with the client.
# The module's docstring is the emulator command's, so `syncd emulator --help` shows it.

from __future__ import annotations

from syncd.emulator import command

__doc__ = command.__doc__
EPILOG = command.EPILOG
add_arguments = command.add_arguments
run = command.run
