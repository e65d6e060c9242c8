"""`selfimprove judge`: judge jobs over datasets of responses, and judge diagnostics."""
