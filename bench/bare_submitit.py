"""The P2 baseline: what a user would otherwise run, bare submitit executor.batch() of N
trivial functions as held arrays of at most CHUNK tasks each (MaxArraySize; same resources as
the tool's request)."""

from __future__ import annotations

import sys

import submitit


def trivial(i: int) -> int:
    return i


def main(folder: str, n: int, chunk: int) -> None:
    executor = submitit.SlurmExecutor(folder=folder)
    executor.update_parameters(job_name="bare", nodes=1, ntasks_per_node=1, cpus_per_task=2, mem="4GB", time=30,
                               array_parallelism=64, additional_parameters={"hold": True})
    for start in range(0, n, chunk):
        with executor.batch():
            jobs = [executor.submit(trivial, i) for i in range(start, min(n, start + chunk))]
        print(jobs[0].job_id.split("_")[0])


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 1000)
