"""Manual review of generated pairs: a FastAPI app and one static page (`ggt review`)."""

from ggt.review.app import create_app, serve

__all__ = ["create_app", "serve"]
