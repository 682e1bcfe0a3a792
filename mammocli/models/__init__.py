"""The networks (SPEC sections 5.3 and 6) and loading of the official weight files (section 7)."""
