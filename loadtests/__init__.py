"""HTTP-only load generation and benchmark tooling for OpenAI-compatible servers (ours or another).

`python -m loadtests.bench_serve --help` is the entry point; nothing here imports the engine or torch.
"""
