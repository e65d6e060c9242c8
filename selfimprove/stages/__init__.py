"""Pipeline stages. Each reads the tables of earlier stages and writes its own (see each module's docstring)."""
