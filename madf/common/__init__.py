"""madf.common: the helpers every layer shares (one-line user errors, path rules, atomic writes, device parsing).
May import nothing else from madf."""
