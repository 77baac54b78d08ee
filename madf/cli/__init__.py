"""madf.cli: the console scripts, one thin module each over the library packages (the only layer that may import
every other)."""
