"""`python -m cigri.emulator` is `cigri-oar-emulator`."""

from cigri.emulator.cli import main

main()
