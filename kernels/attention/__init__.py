from kernels.attention.base import AttentionBackend, AttentionMetadata
from kernels.attention.dense import DenseAttention, causal_attention

__all__ = ["AttentionBackend", "AttentionMetadata", "DenseAttention", "causal_attention"]
