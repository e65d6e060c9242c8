"""The loop's stages; each takes its own config section, the run context and its input tables (StageDirs)."""
