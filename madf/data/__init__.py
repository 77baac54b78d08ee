"""madf.data: real photos that ship with installed packages, procedural masks and training datasets. May import
madf.common and madf.inpaint (imaging)."""
