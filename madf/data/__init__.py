"""madf.data: real photos that ship with installed packages, and procedural masks."""
