"""Tasks: compose config, build objects, run, return metrics (entry points stay thin)."""
