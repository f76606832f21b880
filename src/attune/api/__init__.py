"""HTTP API: FastAPI routers per audience (artists, rightsholders, platforms, operators)."""

from attune.api.app import create_app
from attune.api.keys import bootstrap_admin_key
from attune.api.server import run_server

__all__ = ["bootstrap_admin_key", "create_app", "run_server"]
