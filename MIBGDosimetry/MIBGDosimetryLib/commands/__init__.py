"""Subcommands of ``mibgdose``, one module each (discovered by :mod:`MIBGDosimetryLib.cli`)."""
