"""Yixin Portal (医心相印): accounts, hospitals, roles, audit log and project wiring."""

from .celery import app as celery_app

__all__ = ["celery_app"]
