"""Tensor/expert-parallel layers and the sharding math they share with the loader's weight map.

Everything here is plain `nn.Linear` / `nn.Embedding` behaviour at world size 1 (no collectives are called).
"""
