"""Coverage-guided fuzzing of wsmachine with atheris; see ``tests/fuzz/run.py``."""
