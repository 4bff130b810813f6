"""`invoke plan`: choose a sparse-update scheme for a model and a data set under a memory
budget (contribution analysis on the host twin, then an evolutionary search; run.py)."""
