"""Run `glm-serve` under cProfile, one profile per thread that matters: the event loop (main thread) and the
engine thread; both are written when the server exits (SIGTERM / Ctrl-C), as pstats files.

    python -m loadtests.profile_server --out /tmp/glm-prof -- --model <dir> --port 8000
    (load it, e.g. bench_serve --max-concurrency 32, then stop the server)
    python -c "import pstats; pstats.Stats('/tmp/glm-prof.engine').sort_stats('tottime').print_stats(20)"

NOTE: cProfile slows Python-heavy code about 2x; read shares and call counts, not absolute times.
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import sys


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="glm-serve-profile", help="prefix of <out>.loop and <out>.engine")
    p.add_argument("server_args", nargs=argparse.REMAINDER, help="glm-serve flags, after --")
    args = p.parse_args(argv)
    server_args = args.server_args[1:] if args.server_args[:1] == ["--"] else args.server_args

    import server.async_engine as async_engine
    from server.cli import main as serve

    engine_profile, loop_profile = cProfile.Profile(), cProfile.Profile()
    loop_forever = async_engine.AsyncEngine._loop_forever

    def profiled_loop(self, core, probe):  # runs in the engine thread: cProfile hooks that thread only
        engine_profile.enable()
        try:
            return loop_forever(self, core, probe)
        finally:
            engine_profile.disable()
            engine_profile.dump_stats(f"{args.out}.engine")

    def dump_loop() -> None:
        loop_profile.disable()
        loop_profile.dump_stats(f"{args.out}.loop")
        print(f"profiles written to {args.out}.loop and {args.out}.engine", file=sys.stderr)

    async_engine.AsyncEngine._loop_forever = profiled_loop
    atexit.register(dump_loop)
    loop_profile.enable()
    serve(server_args)


if __name__ == "__main__":
    main()
