"""The self-improvement loop: its stages, the one sharded resumable runner they share, and the loop itself."""
