"""Multi-process tensor/expert parallelism: the process group, rank 0's executor and the followers' loop."""
