"""Composition root: loads settings, sets up logging, builds engines. The only place that wires
concrete objects together; daemons, CLI and API get what they need from here."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from sqlalchemy import Engine

from cigri.config import Settings, load_settings
from cigri.storage.db import make_engine

_LEVELS = {"WARN": "WARNING", "FATAL": "CRITICAL"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the `extra` identifiers (campaign_id, cluster, action)."""

    _STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update({k: v for k, v in record.__dict__.items() if k not in self._STANDARD})
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def setup_logging(settings: Settings, *, name: str = "cigri") -> None:
    """Configure the root logger once, from LOG_FILE, LOG_LEVEL and LOG_FORMAT."""
    target = settings.LOG_FILE
    handler: logging.Handler
    if target.upper() == "STDOUT":
        handler = logging.StreamHandler(sys.stdout)
    elif target.upper() in {"STDERR", ""}:
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.FileHandler(target)
    if settings.LOG_FORMAT == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            f"%(asctime)s %(levelname)s [{name}] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    level = settings.LOG_LEVEL.upper()
    root.setLevel(_LEVELS.get(level, level))


def build_engine(settings: Settings) -> Engine:
    return make_engine(settings.database_url)


def load() -> Settings:
    """Load and validate settings (raises ConfigError with every problem listed)."""
    return load_settings()
