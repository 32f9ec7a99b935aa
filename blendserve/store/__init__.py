"""Persistence only: models, repositories, blob storage, engine/session factory."""
