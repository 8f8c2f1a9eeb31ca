"""Models trained by code other than the tool's (benchmarks/zoo_forget.py builds and uses them)."""
