"""Corpus, training and evaluation of glm-serve's embedded GLM-4.5-architecture model (engine/embedded/)."""
