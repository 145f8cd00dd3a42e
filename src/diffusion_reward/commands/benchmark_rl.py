"""``diffusion-reward benchmark-rl``: run a grid of train-rl cells (task x reward x seed) from a TOML file."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Run every cell (task x reward x seed) of an RL benchmark grid described by a TOML file, and write one "
        "small JSON record per finished cell (evaluation curve, time per stage, fingerprints of the reward model "
        "and expert data, resolved config, code version). Finished cells are skipped and interrupted ones resume "
        "from their newest checkpoint, so the same command, run again after a kill, finishes the grid with the "
        "same results. Make tables and figures from the records with `diffusion-reward plot-rl RESULTS_DIR`.")
    p.epilog = (
        "examples:\n"
        "  diffusion-reward benchmark-rl benchmarks/rl_grid.toml --jobs 2\n"
        "  diffusion-reward benchmark-rl benchmarks/rl_grid.toml --tasks reach-v3 --rewards sparse rnd --list\n"
        "  diffusion-reward benchmark-rl benchmarks/rl_grid.toml --executor slurm --jobs 64 --slurm-partition cpu\n"
        "\n"
        "The grid file names the tasks, the rewards (each with its reward model directory or expert data), the "
        "seeds, the frames per cell, the observations, the train-rl preset and any other train-rl setting; see "
        "benchmarks/rl_grid.toml.")
    p.add_argument("grid", metavar="GRID.toml", help="the grid file")
    p.add_argument("--tasks", nargs="+", metavar="TASK", default=None, help="run only these tasks of the grid")
    p.add_argument("--rewards", nargs="+", metavar="NAME", default=None,
                   help="run only these rewards of the grid (their names in the grid file)")
    p.add_argument("--seeds", nargs="+", type=int, metavar="SEED", default=None, help="run only these seeds")
    p.add_argument("--frames", type=int, default=None, metavar="N",
                   help="environment frames per cell instead of the grid's: another grid, named <name>-<N>k, "
                        "with runs and records of its own (how a task is extended to a larger budget)")
    p.add_argument("--preset", default=None, metavar="NAME",
                   help="train-rl preset instead of the grid's (tiny: a smoke test of the whole grid in minutes): "
                        "another grid, named <name>-<preset>, with runs and records of its own")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="cells run at once (default: 1). Locally each cell gets cores/N of the cores; with "
                        "--executor slurm, the number of array tasks running at once")
    p.add_argument("--executor", choices=["local", "slurm", "submitit-local"], default="local",
                   help="where cells run: local (child processes on this machine; default), slurm (one SLURM "
                        "array task per cell, submitted with submitit), submitit-local (submitit's local executor: "
                        "the slurm path without a cluster)")
    p.add_argument("--runs", default=None, metavar="DIR",
                   help="root of the cells' run directories (default: the grid's 'runs', runs/benchmark-rl)")
    p.add_argument("--results", default=None, metavar="DIR",
                   help="root of the cells' records (default: the grid's 'results', benchmarks/results/rl)")
    p.add_argument("--list", action="store_true",
                   help="print every cell and how far it is (finished / frames done / not started), run nothing")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    slurm = p.add_argument_group("SLURM (--executor slurm)")
    slurm.add_argument("--slurm-partition", default=None, metavar="NAME", help="partition to submit to")
    slurm.add_argument("--slurm-time-min", type=int, default=24 * 60, metavar="MIN",
                       help="time limit of one cell's job in minutes (default: 1440)")
    slurm.add_argument("--slurm-cpus", type=int, default=2, metavar="N", help="CPUs per cell (default: 2)")
    slurm.add_argument("--slurm-gpus", type=int, default=0, metavar="N", help="GPUs per cell (default: 0)")


def run(args: argparse.Namespace) -> int:
    from diffusion_reward.rl.benchmark import cell_progress, finished_record, load_grid, run_grid
    from diffusion_reward.utils.logging import get_logger

    log = get_logger()
    grid = load_grid(args.grid, runs=args.runs, results=args.results).select(
        tasks=args.tasks, rewards=args.rewards, seeds=args.seeds, frames=args.frames, preset=args.preset)
    if args.list:
        for cell in grid.cells():
            if finished_record(cell) is not None:
                state = "finished"
            else:
                done = cell_progress(cell)
                state = f"{done}/{cell.frames} frames" if done else "not started"
            print(f"{cell.key:<40} {state}")
        return 0
    report = run_grid(grid, jobs=args.jobs, executor=args.executor, progress=args.progress, log=log.info,
                      slurm={"partition": args.slurm_partition, "time_min": args.slurm_time_min,
                             "cpus": args.slurm_cpus, "gpus": args.slurm_gpus})
    log.info(f"grid {grid.name}: {len(report.skipped) + len(report.finished)} cells finished "
             f"({len(report.finished)} now), {len(report.failed)} failed; records in {grid.results_dir}")
    return 1 if report.failed else 0
