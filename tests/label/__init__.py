"""MONAI Label server tests (run from the main environment; the server runs in .venv-label)."""
