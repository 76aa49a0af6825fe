"""Reading the Dockerfile and .dockerignore, for the tests that check the image without a Docker
engine (tests/unit/test_deployment_files.py, tests/unit/test_image_install.py): the one
implementation is `metrify_dev.image`, which the production-shaped run builds its image with."""

from __future__ import annotations

from metrify_dev.image import (
    DOCKERFILE,
    DOCKERIGNORE,
    copy_arguments,
    env,
    env_assignments,
    ignore_patterns,
    ignored,
    instructions,
)

__all__ = [
    "DOCKERFILE",
    "DOCKERIGNORE",
    "copy_arguments",
    "env",
    "env_assignments",
    "ignore_patterns",
    "ignored",
    "instructions",
]
