"""Model families: each one owns its weight files, loading, preparation needs and outputs."""
