"""What runs a job: the run context (store, console, progress, one generator at a time), device choice and the
request cache. Scorers, row builders and trainers never import the context (they are plain library objects)."""
