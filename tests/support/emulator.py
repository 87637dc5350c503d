"""The emulator harness the tests use: syncd's public one (see syncd.emulator.harness)."""

from syncd.emulator.harness import EmulatorError, EmulatorProcess

__all__ = ["EmulatorError", "EmulatorProcess"]
